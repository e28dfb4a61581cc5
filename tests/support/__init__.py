"""Helpers the tests share (no tests here): builders, fake servers, real-service utilities."""
