"""The line I/O board's MicroPython firmware (README.md). A package so that the board and the
gateway import the same files the same way: ``from firmware import protocol``."""
