"""What a test session computes once and shares between its tests: dual encoders and their zero-shot results
(`encoders.py`), vision-language models and their answers and attention (`vlms.py`), both behind one memo."""
