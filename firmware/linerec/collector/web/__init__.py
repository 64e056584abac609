"""The collector's web console and JSON API (`linerec collector web`).

Routes (`pages`, `api`) only parse requests and render answers; what they may do and what
it leaves in the audit is decided once, in `service`, which reaches recordings through the
collector store and the audit chain. Needs the optional `collector` extra (FastAPI, Jinja2,
uvicorn, argon2-cffi, pyotp, segno): nothing on the appliance imports this package.
"""
