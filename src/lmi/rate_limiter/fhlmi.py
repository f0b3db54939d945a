"""fhlmi's ways of inspecting a :class:`~lmi.rate_limiter.GlobalRateLimiter`, kept for code that uses them.

lmi's own API is :meth:`~lmi.rate_limiter.GlobalRateLimiter.rate_limit_status`; these list the same
windows as fhlmi's ``(limits.RateLimitItem, (namespace, key))`` pairs and look limits up its way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from lmi.rate_limiter.defaults import MATCH_ALL, MATCH_MACHINE_ID
from lmi.rate_limiter.parsing import WindowSpec, parse_rate_limit

if TYPE_CHECKING:
    from limits import RateLimitItem

    from lmi.rate_limiter.backend import Backend

LimitKey = tuple["RateLimitItem", tuple[str, str]]


def rate_limit_item(spec: WindowSpec) -> RateLimitItem:
    """``spec`` as the ``limits`` item fhlmi's callers expect."""
    import limits

    return limits.parse(f"{spec.amount} per {spec.multiples} {spec.granularity}")


class FhlmiInspection:
    """Mixed into ``GlobalRateLimiter``: fhlmi's key listing and limit lookup."""

    # fhlmi counted these hosts per outbound IP instead of per machine id; lmi counts every web host per
    # machine id (finding the outbound IP would take a network call), so this is informational.
    NO_MACHINE_ID_EXTENSIONS: ClassVar[set[str]] = {"crossref.org"}

    def _active(self) -> Backend:  # provided by GlobalRateLimiter
        raise NotImplementedError

    def _configured_specs(self) -> dict[tuple[str, str], WindowSpec]:  # provided by GlobalRateLimiter
        raise NotImplementedError

    async def get_limit_keys(self) -> list[LimitKey]:
        """Every window the store holds: ``[(limits.RateLimitItem, (namespace, key))]``."""
        states = await self._active().windows(self._configured_specs())
        return [(rate_limit_item(state.spec), (state.namespace, state.key)) for state in states]

    async def get_rate_limit_keys(self) -> list[LimitKey]:
        """:meth:`get_limit_keys` of a limiter that keeps its windows in Redis."""
        if self._active().name != "redis":
            raise NotImplementedError("get_rate_limit_keys needs Redis; use get_in_memory_limit_keys")
        return await self.get_limit_keys()

    async def get_in_memory_limit_keys(self) -> list[LimitKey]:
        """:meth:`get_limit_keys` of a limiter that keeps its windows in memory."""
        if self._active().name != "memory":
            raise NotImplementedError("get_in_memory_limit_keys needs the in-memory store")
        return await self.get_limit_keys()

    def parse_rate_limits_and_namespace(
        self, namespace: str, primary_key: str | None
    ) -> tuple[RateLimitItem, str]:
        """fhlmi's lookup: the configured limit for ``(namespace, primary_key)`` and the namespace found.

        Tried in order: the namespace without its machine id, then with the ``<machine_id>``
        placeholder, each with the key and then with ``MATCH_ALL``; else ``FALLBACK_RATE_LIMIT``
        (which :meth:`try_acquire` never applies on its own: lmi limits only what is configured).
        """
        from lmi.rate_limiter.defaults import FALLBACK_RATE_LIMIT

        base, _, suffix = namespace.rpartition("|")
        stripped = base if base and suffix and not suffix.isalpha() else namespace
        placeholder = f"{stripped}|{MATCH_MACHINE_ID}"
        config: dict[Any, Any] = self.rate_config
        for candidate in (
            (stripped, primary_key),
            (placeholder, primary_key),
            (placeholder, MATCH_ALL),
            (stripped, MATCH_ALL),
        ):
            if candidate in config:
                return _as_item(config[candidate]), candidate[0]
        return FALLBACK_RATE_LIMIT, stripped

    rate_config: dict[Any, Any]


def _as_item(value: Any) -> RateLimitItem:
    return rate_limit_item(parse_rate_limit(value))


__all__ = ["FhlmiInspection", "rate_limit_item"]
