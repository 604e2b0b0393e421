"""Authentication and authorisation (chapter 4): who is calling, and what they may do."""
