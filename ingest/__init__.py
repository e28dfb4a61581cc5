"""The ingest door: verify Stripe webhook signatures and hand each event to a sink (Kafka).

- ``ingest.signature``: the Stripe-Signature header, parsed and checked with bounded work.
- ``ingest.core``: verify-then-parse of one request, shared by the HTTP app and AWS Lambda.
- ``ingest.sink``: the ``Sink`` interface and ``KafkaSink``.
- ``ingest.app``: ``create_app(settings, sink)``, a plain ASGI app served by uvicorn.
- ``ingest.lambda_handler``: ``handler(event, context)`` for API Gateway -> Lambda.
"""
