"""Signed A/B updates: RAUC bundles checked before anything is written, installed into the
other root slot, booted on trial, and reported (docs/updates.md)."""
