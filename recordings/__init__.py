"""Call recordings: attaching files to calls, serving them, retention."""
