"""Test doubles that speak real protocols: an SMTP server and an SMS/voice gateway."""
