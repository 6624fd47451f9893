"""Rendering results: tables for the terminal, and the Markdown/HTML report with plots."""
