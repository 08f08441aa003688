"""The OpenAPI description of /api/v1/, written by hand so it says exactly what we promise."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _id_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "integer"}}


NOT_FOUND = _json(_ERROR, "Missing, or not open to the caller (the two look the same)")
UNAUTHORIZED = _json(_ERROR, "No valid session or token")

SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Appliance API",
        "version": "1",
        "description": "Ask questions about your organisation's documents and get cited answers. "
        "Authenticate with `Authorization: Bearer <token>` (create one with "
        "`python manage.py create_api_token <username>`).",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Collection": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "department": {"type": "string"},
                    "language": {"type": "string"},
                },
            },
            "Document": {
                "type": "object",
                "properties": {
                    "id": {"type": ["integer", "null"]},
                    "title": {"type": "string"},
                    "status": {
                        "type": "string",
                        "enum": [
                            "queued",
                            "parsing",
                            "embedding",
                            "ready",
                            "failed",
                            "cancelled",
                            "rejected",
                        ],
                    },
                    "error": {"type": "string"},
                    "pages": {"type": ["integer", "null"]},
                    "chunks": {"type": "integer"},
                    "progress": {"type": "integer", "description": "0 to 100"},
                },
            },
            "Citation": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer"},
                    "document_id": {"type": "integer"},
                    "title": {"type": "string"},
                    "page": {"type": ["integer", "null"]},
                    "snippet": {"type": "string"},
                },
            },
            "Question": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "status": {"type": "string", "enum": ["queued", "running", "done", "error"]},
                    "question": {"type": "string"},
                    "answer": {"type": "string"},
                    "grounded": {"type": ["boolean", "null"]},
                    "url": {
                        "type": "string",
                        "description": "The answer's page; it opens for its asker only",
                    },
                    "citations": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Citation"},
                    },
                },
            },
        },
    },
    "paths": {
        "/collections": {
            "get": {
                "summary": "Collections the caller may read",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "collections": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Collection"},
                                }
                            },
                        }
                    ),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/collections/{id}/documents": {
            "parameters": [_id_param("id")],
            "get": {
                "summary": "Documents of a collection, with ingestion status and progress",
                "responses": {"200": _json({"type": "object"}), "404": NOT_FOUND},
            },
            "post": {
                "summary": "Upload one or more files (curators of the owning department)",
                "requestBody": {
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "files": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    }
                                },
                            }
                        }
                    }
                },
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "properties": {
                                "documents": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Document"},
                                }
                            },
                        },
                        "Accepted; each file is queued, or rejected with its reason",
                    ),
                    "400": _json(_ERROR),
                    "403": _json(_ERROR),
                    "404": NOT_FOUND,
                    "413": _json(_ERROR, "Too large"),
                },
            },
        },
        "/documents/{id}": {
            "parameters": [_id_param("id")],
            "get": {
                "summary": "One document",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Document"}),
                    "404": NOT_FOUND,
                },
            },
            "delete": {
                "summary": "Delete the document and all its chunks",
                "responses": {
                    "204": {"description": "Deleted"},
                    "403": _json(_ERROR),
                    "404": NOT_FOUND,
                },
            },
        },
        "/questions": {
            "post": {
                "summary": "Ask a question",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["question"],
                                "properties": {
                                    "question": {"type": "string"},
                                    "collection_ids": {
                                        "type": "array",
                                        "items": {"type": "integer"},
                                        "description": "Narrows the search; never widens it",
                                    },
                                    "conversation_id": {
                                        "type": "integer",
                                        "description": "Continues one of the caller's "
                                        "conversations",
                                    },
                                    "document_id": {
                                        "type": "integer",
                                        "description": "Asks about this document as a whole: "
                                        "it is read part by part (progress events) and the "
                                        "answer cites its pages. A document the caller may "
                                        "not read is refused like a missing one",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _json({"type": "object", "properties": {"id": {"type": "integer"}}}),
                    "400": _json(_ERROR),
                },
            }
        },
        "/questions/{id}": {
            "parameters": [_id_param("id")],
            "get": {
                "summary": "A question and its answer",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Question"}),
                    "404": NOT_FOUND,
                },
            },
        },
        "/questions/{id}/events": {
            "parameters": [_id_param("id")],
            "get": {
                "summary": "Server-Sent Events: queued, progress, sources, token, done, error",
                "description": "Send Last-Event-ID to resume after a reconnect. While a "
                "question about a whole document is read part by part, progress events "
                'say how far: {"done": 2, "total": 12, "stage": "reading" or "combining", '
                '"title": the document being read}.',
                "responses": {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {}},
                    },
                    "404": NOT_FOUND,
                },
            },
        },
        "/questions/{id}/cancel": {
            "parameters": [_id_param("id")],
            "post": {
                "summary": "Stop generating the answer",
                "responses": {"202": _json({"type": "object"}), "404": NOT_FOUND},
            },
        },
        "/audit/events": {
            "get": {
                "summary": "Export the audit log (auditors only)",
                "description": "The export is signed: the X-Audit-Manifest response header "
                "holds its manifest (filters, row count, first and last hash, SHA-256 of the "
                "body, Ed25519 signature), or bundle=zip returns the file and its manifest "
                "together. Check it offline with `manage.py audit_verify`.",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("since", "until", "user", "department", "action")
                ]
                + [{"name": "bundle", "in": "query", "schema": {"type": "string", "enum": ["zip"]}}]
                + [
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["jsonl", "csv"]},
                    }
                ],
                "responses": {"200": {"description": "The export"}, "404": NOT_FOUND},
            }
        },
    },
}


_FEEDBACK = {
    "type": "object",
    "properties": {
        "question_id": {"type": "integer"},
        "helpful": {"type": "boolean"},
        "comment": {"type": "string"},
        "share_question": {"type": "boolean"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}

# Feedback on answers and deleting conversations (added beside the paths above, so the
# table of paths stays in the order people meet them).
SCHEMA["paths"]["/questions/{id}/feedback"] = {
    "parameters": [_id_param("id")],
    "get": {
        "summary": "The caller's feedback on their answer (null when none)",
        "responses": {
            "200": _json({"type": "object", "properties": {"feedback": _FEEDBACK}}),
            "404": NOT_FOUND,
        },
    },
    "post": {
        "summary": "Rate the answer: thumbs up or down, an optional comment; again to change it",
        "description": "share_question lets the curators of the collections the answer drew "
        "on read the question and the answer beside the rating; without it they see the "
        "rating, the comment and their own collections' sources only.",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["helpful"],
                        "properties": {
                            "helpful": {"type": "boolean"},
                            "comment": {"type": "string", "maxLength": 2000},
                            "share_question": {"type": "boolean", "default": False},
                        },
                    }
                }
            },
        },
        "responses": {"200": _json(_FEEDBACK), "400": _json(_ERROR), "404": NOT_FOUND},
    },
}
SCHEMA["paths"]["/conversations/{id}"] = {
    "parameters": [_id_param("id")],
    "delete": {
        "summary": "Delete one of the caller's conversations with its questions and answers",
        "description": "The audit log records the deletion and how many questions went, "
        "never their words.",
        "responses": {"204": {"description": "Deleted"}, "404": NOT_FOUND},
    },
}


def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(SCHEMA)
