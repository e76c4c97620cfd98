"""The buyer API (kami/api/views.py: create an order, read it) described in the same OpenAPI
schema, so the docs show it and schemathesis checks it. Those views predate django-ninja and
answer errors as {"error", "message"}; this description is checked against them by
tests/api/test_schema.py (schemathesis): if they drift apart, that test fails."""
from __future__ import annotations

_ERROR = {"type": "object", "required": ["error"],
          "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                         "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}
_DECIMAL = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BuyerError"}}}}


COMPONENTS = {
    "BuyerError": _ERROR,
    "CheckoutIn": {
        "type": "object", "required": ["product", "email", "gateway"],
        "properties": {
            "product": {"type": "string", "description": "the product's slug"},
            "quantity": {"type": "integer", "default": 1},
            "email": {"type": "string", "description": "where the keys are sent"},
            "gateway": {"type": "string", "description": "a payment method the shop has enabled"},
            "lookup_password": {"type": "string", "description": "optional, 8-64 characters: finds the order by email"},
            "coupon": {"type": "string"},
            "custom_values": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "CheckoutOut": {
        "type": "object",
        "required": ["order_no", "token", "status", "amount", "currency", "expires_at", "discount", "coupon", "payment",
                     "order_url"],
        "properties": {
            "order_no": {"type": "string"}, "token": {"type": "string", "description": "shown once: reads the order"},
            "status": {"type": "string"}, "amount": _DECIMAL, "currency": {"type": "string"},
            "expires_at": {"type": "string", "format": "date-time"}, "discount": _DECIMAL,
            "coupon": {"type": ["string", "null"]},
            "payment": {"type": "object", "required": ["type"],
                        "properties": {"type": {"type": "string"}, "url": {"type": "string"}, "qr": {"type": "string"},
                                       "fields": {"type": "object"}}},
            "order_url": {"type": "string"},
        },
    },
    "BuyerOrderOut": {
        "type": "object", "required": ["order_no", "status", "product", "quantity", "amount", "currency"],
        "properties": {
            "order_no": {"type": "string"}, "status": {"type": "string"}, "product": {"type": "string"},
            "quantity": {"type": "integer"}, "amount": _DECIMAL, "currency": {"type": "string"}, "discount": _DECIMAL,
            "custom_values": {"type": "object"}, "paid_at": {"type": ["string", "null"], "format": "date-time"},
            "keys": {"type": "array", "items": {"type": "string"}, "description": "once fulfilled"},
        },
    },
}

PATHS = {
    "/api/v1/orders": {"post": {
        "operationId": "buyer_order_create", "tags": ["buyer"], "summary": "Create an order (no token: the buyer's API)",
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutIn"}}}},
        "responses": {
            "201": {"description": "Created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutOut"}}}},
            "400": _error("invalid input: `fields` names each wrong field"),
            "409": _error("sold out"),
            "413": _error("body over 16 KiB"),
            "502": _error("the payment service refused"),
            "503": _error("the payment service did not answer; retry"),
        },
    }},
    "/api/v1/orders/{order_no}": {"get": {
        "operationId": "buyer_order_read", "tags": ["buyer"], "summary": "Read an order with its token",
        "parameters": [
            {"in": "path", "name": "order_no", "required": True, "schema": {"type": "string"}},
            {"in": "header", "name": "X-Order-Token", "required": False, "schema": {"type": "string"},
             "description": "the token from the order's creation"},
        ],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BuyerOrderOut"}}}},
            "404": _error("no such order, or a wrong token (the same answer)"),
        },
    }},
}


def buyer_schema_add(schema: dict) -> dict:
    schema.setdefault("paths", {}).update(PATHS)
    schema.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    return schema
