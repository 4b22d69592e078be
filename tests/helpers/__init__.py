"""Test helpers importable from every test folder (pytest puts tests/ on sys.path)."""
