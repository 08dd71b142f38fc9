"""Admission: what the service holds at once (images waiting, their pixels, request bodies), reserved before use."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .uploads import RequestError

# The quantities a request reserves, and how a refusal names them.
QUANTITIES = {"images": "images", "pixels": "pixels", "bytes": "bytes of request bodies"}


@dataclass
class Admission:
    """Counts of what admitted requests hold, each within its limit; a reservation past a limit is refused (503).

    A request reserves its body's bytes while it reads them, then its images and
    their pixels (counted from the image headers, before decoding), and releases
    all when it is answered or fails, so requests arriving together cannot pass a
    limit between a check and their use. Thread-safe.

    Attributes
    ----------
    limits:
        The most of each quantity held at once: ``images``, ``pixels``, ``bytes``.
    """

    limits: dict[str, int]
    held: dict[str, int] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.limits) - set(QUANTITIES)
        if unknown:
            raise ValueError(f"unknown admission quantities {sorted(unknown)}; known: {sorted(QUANTITIES)}")
        self.held = dict.fromkeys(self.limits, 0)

    def reserve(self, **amounts: int) -> Reservation:
        """Hold ``amounts`` (e.g. ``images=4, pixels=262144``), all or none; a 503 ``busy`` :class:`RequestError`
        naming the quantity when one would pass its limit."""
        with self._lock:
            for name, amount in amounts.items():
                if self.held[name] + amount > self.limits[name]:
                    raise RequestError(
                        503,
                        "busy",
                        f"{self.held[name]} {QUANTITIES[name]} are held by requests under way; {amount} more would "
                        f"pass the limit of {self.limits[name]}: try again later",
                    )
            for name, amount in amounts.items():
                self.held[name] += amount
        return Reservation(self, dict(amounts))

    def full(self, name: str) -> bool:
        """Whether nothing more of quantity ``name`` can be admitted now."""
        with self._lock:
            return self.held[name] >= self.limits[name]

    def release(self, amounts: dict[str, int]) -> None:
        """Give back what :meth:`reserve` held."""
        with self._lock:
            for name, amount in amounts.items():
                self.held[name] -= amount


@dataclass
class Reservation:
    """What one :meth:`Admission.reserve` holds; :meth:`release` gives it back (once)."""

    admission: Admission
    amounts: dict[str, int]

    def release(self) -> None:
        """Give the amounts back; a second call does nothing."""
        amounts, self.amounts = self.amounts, {}
        self.admission.release(amounts)


@dataclass
class Holdings:
    """The reservations of one request, released together when it ends."""

    reservations: list[Reservation] = field(default_factory=list)

    def add(self, reservation: Reservation) -> None:
        """Keep ``reservation`` until :meth:`release_all`."""
        self.reservations.append(reservation)

    def release_all(self) -> None:
        """Release every reservation held."""
        for reservation in self.reservations:
            reservation.release()
        self.reservations.clear()
