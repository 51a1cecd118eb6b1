"""The data every benchmark moves: one realistic agent context, messages and user facts.

Every contender stores and reads exactly these values, so a difference in throughput
is a difference in how they talk to the server, not in what they send.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "CONTEXT",
    "CONTEXT_UPDATE",
    "HISTORY_LAST",
    "HISTORY_SEED",
    "MAX_HISTORY",
    "MESSAGES",
    "OPERATIONS",
    "PROFILE",
    "SESSION_TTL",
]

#: Seconds a session lives, for every contender (agentmem's ``ttl`` and the raw EX/EXPIRE).
SESSION_TTL: Final = 3600
#: History kept per session (agentmem's ``max_history``; the raw contenders' LTRIM).
MAX_HISTORY: Final = 200
#: Messages read by ``load_turn`` (agentmem's ``last=``; the raw contenders' LRANGE).
HISTORY_LAST: Final = 20

#: What each measured operation does, for the table and the JSON.
OPERATIONS: Final[dict[str, str]] = {
    "pair": "save_context + load_context of the ~4 KB context",
    "update": "update_context of 2 top-level fields",
    "append": "append_messages of 2 messages (~200 B each)",
    "load_turn": "context + last 20 messages + user facts, in one call",
}

_SUMMARY_SENTENCES = (
    "The customer called about order A-10293 placed on March 3rd, which shipped in two parcels. ",
    "The first parcel arrived with the wireless headphones and the charging case intact. ",
    "The second parcel, holding the replacement ear cushions, shows as delivered but never arrived. ",
    "She already checked with the building concierge and her neighbours, and nothing turned up. ",
    "She prefers a replacement over a refund, as long as it ships before her trip on the 21st. ",
    "Earlier in the conversation she asked whether express shipping could be waived this time. ",
    "The agent confirmed the address on file and the phone number used for delivery updates. ",
    "She mentioned a previous late delivery in January that was resolved with a store credit. ",
)


def _summary(chars: int) -> str:
    text = ""
    while len(text) < chars:
        text += _SUMMARY_SENTENCES[len(text) % len(_SUMMARY_SENTENCES)]
    return text[:chars]


#: A realistic agent context: ~4 KB of orjson, 11 top-level fields, a ~2.5 KB running summary.
CONTEXT: Final[dict[str, Any]] = {
    "phone": "+1-415-555-0142",
    "name": "Dana Whitfield",
    "intent": "missing_parcel",
    "order": {
        "id": "A-10293",
        "status": "partially_delivered",
        "placed_at": "2025-03-03T14:22:08Z",
        "currency": "USD",
        "total": 214.97,
        "items": [
            {
                "sku": "HP-900-BLK",
                "name": "Wireless headphones, black",
                "qty": 1,
                "price": 179.99,
                "parcel": 1,
                "delivered": True,
                "warehouse": "OAK-2",
            },
            {
                "sku": "HP-900-CUSH",
                "name": "Replacement ear cushions",
                "qty": 2,
                "price": 12.49,
                "parcel": 2,
                "delivered": False,
                "warehouse": "RNO-1",
            },
            {
                "sku": "CBL-USBC-1M",
                "name": "USB-C cable, 1 m",
                "qty": 1,
                "price": 9.99,
                "parcel": 1,
                "delivered": True,
                "warehouse": "OAK-2",
            },
        ],
        "shipping_address": {
            "street": "1200 Harrison St, Apt 5C",
            "city": "San Francisco",
            "region": "CA",
            "postal_code": "94103",
            "country": "US",
        },
        "tracking": ["1Z999AA10123456784", "1Z999AA10123456785"],
        "events": [
            {"at": "2025-03-03T14:22:08Z", "status": "placed"},
            {"at": "2025-03-04T09:10:51Z", "status": "shipped", "parcel": 1},
            {"at": "2025-03-05T16:40:02Z", "status": "shipped", "parcel": 2},
            {"at": "2025-03-07T11:03:37Z", "status": "delivered", "parcel": 1},
            {"at": "2025-03-08T13:55:20Z", "status": "delivered", "parcel": 2, "signed_by": ""},
        ],
    },
    "summary": _summary(2500),
    "entities": [
        {"type": "order_id", "value": "A-10293"},
        {"type": "date", "value": "2025-03-21"},
        {"type": "product", "value": "ear cushions"},
        {"type": "location", "value": "building concierge"},
        {"type": "tracking_number", "value": "1Z999AA10123456785"},
        {"type": "date", "value": "2025-01-14", "note": "previous late delivery"},
    ],
    "turn": 7,
    "language": "en-US",
    "channel": "voice",
    "sentiment": -0.35,
    "escalated": False,
}

#: A typical mid-conversation update: the intent moved on and a tool ran.
CONTEXT_UPDATE: Final[dict[str, Any]] = {
    "intent": "request_replacement",
    "last_tool": {"name": "create_replacement_order", "ok": True, "order_id": "A-10377"},
}

#: One exchange, ~200 bytes of JSON per message.
MESSAGES: Final[list[dict[str, Any]]] = [
    {
        "role": "user",
        "content": (
            "The second box with the ear cushions never showed up. "
            "Can you send new ones before the 21st, please?"
        ),
        "ts": "2025-03-14T09:12:44Z",
        "tokens": 24,
        "id": "m-0007-u",
    },
    {
        "role": "assistant",
        "content": (
            "I'm sorry about that. I've created replacement order A-10377 "
            "with express shipping at no cost to you."
        ),
        "ts": "2025-03-14T09:12:47Z",
        "tokens": 27,
        "id": "m-0007-a",
    },
]

#: The history every session starts with, so ``load_turn`` reads a full page.
HISTORY_SEED: Final[list[dict[str, Any]]] = [
    {**MESSAGES[i % 2], "id": f"m-{i // 2:04d}-{'ua'[i % 2]}"} for i in range(HISTORY_LAST)
]

#: Long-term user facts read by ``load_turn(user_id=...)``.
PROFILE: Final[dict[str, Any]] = {
    "preferred_name": "Dana",
    "language": "en-US",
    "tier": "gold",
    "shipping": {"city": "San Francisco", "express_ok": True},
    "past_issues": ["late delivery 2025-01"],
}
