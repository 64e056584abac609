"""The call flow: a sans-IO state machine per line, and the consent policy it applies."""
