"""Cost tracking: what each call cost, running totals per model, and a persistent ledger.

- :mod:`lmi.cost.pricing`: ``price_usage(model, usage)`` prices billed usage from litellm's local map
  (or prices set with ``set_model_prices``); :mod:`lmi.cost.rates` holds the rates it resolves to.
- :mod:`lmi.cost.tracker`: ``GLOBAL_COST_TRACKER`` and the switches ``enable_cost_tracking`` /
  ``cost_tracking_ctx``.
- :mod:`lmi.cost.ledger`: ``enable_cost_ledger`` (or env ``LMI_COST_LEDGER``) and ``read_ledger``.
- :mod:`lmi.cost.budget`: budgets (``cost_tracking_ctx(budget_usd=...)``, ``config["budget_usd"]``),
  in memory or shared through Redis (:mod:`lmi.cost.budget_redis`); :mod:`lmi.cost.estimate` gives the
  worst case a call reserves.
"""

from __future__ import annotations

from lmi.cost.budget import Budget, BudgetStatus, Holds, reserve_all, settle_budgets
from lmi.cost.ledger import (
    LEDGER_ENV,
    LedgerSummary,
    enable_cost_ledger,
    format_ledger,
    ledger_path,
    read_ledger,
)
from lmi.cost.pricing import (
    UnknownModelPriceWarning,
    clear_model_prices,
    clear_price_cache,
    has_price_override,
    max_output_tokens,
    model_prices,
    price_entry,
    price_usage,
    set_model_prices,
    usage_cost,
)
from lmi.cost.rates import CallCost, ModelPrices, TokenRates, split_cost
from lmi.cost.totals import ModelCost, format_cost_table, format_usd
from lmi.cost.tracker import (
    GLOBAL_COST_TRACKER,
    CostCallback,
    CostRecord,
    CostTracker,
    active_budgets,
    cost_tracking_ctx,
    cost_tracking_enabled,
    enable_cost_tracking,
)

__all__ = [
    "GLOBAL_COST_TRACKER",
    "LEDGER_ENV",
    "Budget",
    "BudgetStatus",
    "CallCost",
    "CostCallback",
    "CostRecord",
    "CostTracker",
    "Holds",
    "LedgerSummary",
    "ModelCost",
    "ModelPrices",
    "TokenRates",
    "UnknownModelPriceWarning",
    "active_budgets",
    "clear_model_prices",
    "clear_price_cache",
    "cost_tracking_ctx",
    "cost_tracking_enabled",
    "enable_cost_ledger",
    "enable_cost_tracking",
    "format_cost_table",
    "format_ledger",
    "format_usd",
    "has_price_override",
    "ledger_path",
    "max_output_tokens",
    "model_prices",
    "price_entry",
    "price_usage",
    "read_ledger",
    "reserve_all",
    "set_model_prices",
    "settle_budgets",
    "split_cost",
    "usage_cost",
]
