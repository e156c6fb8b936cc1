"""Accounts: users, their roles and their enabled flag."""
