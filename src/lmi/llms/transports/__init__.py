"""How a request reaches a provider: natively, or through litellm.

Every deployment gets a :class:`Route`, resolved once when the model is built from
``config["transport"]`` (``"auto"``, ``"native"``, ``"litellm"``; per deployment in ``litellm_params`` or for
the whole model):

* **native** — our own codec on one pooled aiohttp session per event loop: the OpenAI chat-completions
  wire format (OpenAI, and every OpenAI-compatible server reached as ``openai/<model>`` with an
  ``api_base``) and Anthropic Messages;
* **litellm** — ``litellm.acompletion``, for every other provider.

``"auto"`` sends natively what the native codecs can send exactly as litellm would, and everything else
(another provider, a parameter the codec does not know) through litellm, per call. ``"native"`` refuses
what it cannot send, naming the reason. Both transports take the same litellm-shaped request and return
the same :class:`~lmi.llms.results.Completion`; failures are litellm's exception classes on both.

Where the native transport deliberately differs from litellm (everything else is checked equal over
every recorded exchange in tests/llms/transports/test_differential.py):

* Anthropic results keep Anthropic's message id in ``provider_response_id`` (litellm makes up a random
  ``chatcmpl-...`` one);
* a redirect is not followed: it raises ``litellm.APIError`` (status 3xx, not retried) naming the target;
* a 200 whose content type is not JSON is refused even when its body parses;
* the ``User-Agent`` header is aiohttp's, not litellm's.

Seams: :class:`Route` picks the transport per call; both transports take ``before_send``, awaited right
before the request is written (the rate limiter charges there). It returns the
:class:`~lmi.llms.transports.wire.Charge`: the native transport awaits it once the body is encoded and
counts it again when the first byte goes out well after the grant (a connection to open or wait for);
the litellm transport awaits it when litellm writes the request, on a client lmi hands litellm (OpenAI,
Anthropic; see :mod:`~lmi.llms.transports.litellm_clients`), else right before calling litellm. A request
that never reached the server is not charged, or its charge is handed back (through litellm on its own
client: when its error shows a failed connect).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmi.exceptions import ConfigurationError
from lmi.llms.transports.litellm import LITELLM, LiteLLMTransport
from lmi.llms.transports.native import NativeTransport
from lmi.llms.transports.wire import Unsupported

if TYPE_CHECKING:
    from lmi.llms.config import Deployment

Transport = NativeTransport | LiteLLMTransport

_NATIVE = ("openai", "anthropic")


def wire_format(params: Any) -> str | None:
    """``"openai"`` or ``"anthropic"`` when a deployment speaks a wire format sent natively, else None."""
    model = str(params.get("model", ""))
    provider = params.get("custom_llm_provider")
    if provider is None and "/" in model:
        provider = model.split("/", 1)[0]
    if provider is not None:
        return provider if provider in _NATIVE else None
    if model.startswith("ft:gpt-"):  # a fine-tuned OpenAI model, as litellm places it
        return "openai"
    # A bare name goes where litellm's model map places it; one the map does not know stays on litellm,
    # which then says it cannot tell the provider.
    from lmi._model_map import model_map

    entry = model_map().get(model)
    provider = entry.get("litellm_provider") if isinstance(entry, dict) else None
    return provider if provider in _NATIVE else None


def _codec(wire: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"lmi.llms.transports.{wire}")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one deployment's calls go. ``native`` is None when they all go through litellm."""

    native: NativeTransport | None
    forced: bool  # transport="native": refuse rather than fall back to litellm
    litellm: LiteLLMTransport = LITELLM

    def pick(self, deployment: Deployment, request: dict[str, Any]) -> tuple[Transport, Any]:
        """The transport for this request and what it prepared from it."""
        if self.native is not None:
            try:
                return self.native, self.native.prepare(request)
            except Unsupported as exc:
                if self.forced:
                    raise ValueError(
                        f"{deployment.name}: transport='native' cannot send {exc} "
                        "(use transport='auto' or 'litellm' for it)"
                    ) from None
        return self.litellm, self.litellm.prepare(request)


LITELLM_ROUTE = Route(native=None, forced=False)


def _through_litellm(max_connections: int) -> LiteLLMTransport:
    return LITELLM if max_connections == LITELLM.max_connections else LiteLLMTransport(max_connections)


def route_for(deployment: Deployment, max_connections: int) -> Route:
    """Resolve ``deployment.transport`` once; raise :class:`ConfigurationError` for an impossible one."""
    litellm = _through_litellm(max_connections)
    only_litellm = LITELLM_ROUTE if litellm is LITELLM else Route(native=None, forced=False, litellm=litellm)
    if deployment.transport == "litellm":
        return only_litellm
    wire = wire_format(deployment.params)
    forced = deployment.transport == "native"
    if wire is None:
        if forced:
            raise ConfigurationError(
                f"{deployment.name}: transport='native' sends the OpenAI chat-completions and Anthropic "
                f"Messages formats; model {deployment.model!r} is neither (use 'auto' or 'litellm')"
            )
        return only_litellm
    native = NativeTransport(_codec(wire), max_connections)
    try:
        native.prepare({**deployment.params, "messages": []})
    except Unsupported as exc:
        if forced:
            raise ConfigurationError(f"{deployment.name}: transport='native' cannot send {exc}") from None
        return only_litellm
    return Route(native=native, forced=forced, litellm=litellm)


__all__ = ["LITELLM_ROUTE", "Route", "Transport", "Unsupported", "route_for", "wire_format"]
