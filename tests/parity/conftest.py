"""reference.py runs in the torch venv (it imports torch): pytest must not import it here."""

collect_ignore = ["reference.py"]
