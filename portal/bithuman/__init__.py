"""The only code that speaks HTTP to bitHuman: a typed client and its errors."""
