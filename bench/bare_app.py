"""The baseline for bench/inbound.py: the same server, no product.

    gunicorn -c gunicorn.conf.py 'bench.bare_app:create_app()'

POST /twilio/messages answers every request with one fixed TwiML reply (no signature
check, no database), so what the product adds on top of Flask and gunicorn is the
difference between the two runs. /healthz answers like the product's, for the start-up wait.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thank you, Bench Supporter, '
    "you have signed! You are supporter number 1; 49,258 people have now signed. Please "
    "share the petition: https://www.change.org/p/example</Message><Message>Would you like "
    "updates about this campaign on this channel?\nReply 1 YES or 2 NO</Message></Response>"
)


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/twilio/messages")
    def messages() -> Response:
        return Response(TWIML, mimetype="text/xml")

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok", database="none"), 200

    return app
