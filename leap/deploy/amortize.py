"""When does exit-aware training pay back? (paper App. A.4, G)"""

from __future__ import annotations

from leap.errors import LeapError


def amortize(
    requests_per_day: float, full_ms: float, exit_ms: float, train_device_hours: float, serving_devices: int = 1
) -> dict:
    """Break-even of a training run (paper App. A.4, G): the device time saved per request,
    ``(full_ms - exit_ms)``, against the one-time training cost in device-hours.

    Returns the saving per day in device-hours, the requests and days to break even (``None``
    when exit is not faster), and the speedup."""
    if min(requests_per_day, full_ms, exit_ms, train_device_hours) < 0 or serving_devices < 1:
        raise LeapError("amortize needs non-negative volume, latencies and training cost, and >= 1 serving device")
    saved_ms = full_ms - exit_ms
    out = {
        "speedup": full_ms / exit_ms if exit_ms else None,
        "saved_ms_per_request": saved_ms,
        "train_device_hours": train_device_hours,
    }
    if saved_ms <= 0:
        return out | {
            "saved_device_hours_per_day": 0.0,
            "break_even_requests": None,
            "break_even_days": None,
            "verdict": "early exit is not faster on this hardware: training never pays back",
        }
    per_day = requests_per_day * saved_ms / 3.6e6
    requests = train_device_hours * 3.6e6 / saved_ms
    days = requests / requests_per_day if requests_per_day else None
    return out | {
        "saved_device_hours_per_day": per_day,
        "break_even_requests": requests,
        "break_even_days": days,
        "verdict": f"pays back after {requests:,.0f} requests"
        + (f" ({days:.1f} days at {requests_per_day:,.0f} a day)" if days is not None else ""),
    }
