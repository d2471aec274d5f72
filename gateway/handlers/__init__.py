"""Thin HTTP handlers: parse and check input, call the domain, shape the JSON."""
