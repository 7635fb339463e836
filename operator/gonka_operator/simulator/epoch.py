"""The network-node stand-in's chain clock: block height, epochs and the PoC window.

Follows the phases of the api's phase tracker (`decentralized-api/chainphase`, the `EpochPhase`
strings of `GET /v1/epochs/latest`, REFERENCE.md §7). Every epoch is `epoch_length` blocks and starts
with PoC at `poc_start`:

    PoCGenerate          [poc_start, +poc_length)
    PoCGenerateWindDown  [.., +wind_down)
    PoCValidate          [.., +validation_length)
    PoCValidateWindDown  [.., +wind_down)
    Inference            until the next poc_start

The height advances one block every `block_time` seconds; `block_time == 0` freezes it, so only
`open_poc()` / `close_poc()` / `advance()` move it (tests that must not wait for real epochs). The
clock starts in the Inference phase of epoch 1, so new entries first go to INFERENCE.

Numbers are JSON numbers (v0.2.15 may send strings; clients must accept both).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PHASES = ("PoCGenerate", "PoCGenerateWindDown", "PoCValidate", "PoCValidateWindDown", "Inference")
POC_PHASES = PHASES[:4]
# When the clock is frozen, seconds_until_next_poc is estimated with the mainnet's ~5 s blocks.
NOMINAL_BLOCK_SECONDS = 5.0


@dataclass
class EpochClock:
    epoch_length: int = 100
    poc_length: int = 20
    validation_length: int = 10
    wind_down: int = 2
    block_time: float = 1.0
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        if min(self.poc_length, self.validation_length) < 1 or self.wind_down < 0:
            raise ValueError("PoC and validation lengths must be >= 1 block, wind-down >= 0")
        if self.epoch_length <= self.poc_window_blocks:
            raise ValueError(f"epoch length {self.epoch_length} must exceed the PoC window "
                             f"({self.poc_window_blocks} blocks)")
        self.epoch_index = 1
        self.poc_start = 1
        self._base_height = self.poc_start + self.poc_window_blocks  # first Inference block
        self._base_time = self.clock()
        self.confirmation_poc_active = False

    @property
    def poc_window_blocks(self) -> int:
        return self.poc_length + self.validation_length + 2 * self.wind_down

    # -- reading ----------------------------------------------------------------------------------

    @property
    def height(self) -> int:
        if self.block_time <= 0:
            return self._base_height
        return self._base_height + int((self.clock() - self._base_time) / self.block_time)

    def sync(self) -> None:
        """Roll epochs forward to the current height (called before every read by the owner)."""
        h = self.height
        while h >= self.poc_start + self.epoch_length:
            self.poc_start += self.epoch_length
            self.epoch_index += 1

    def stages(self) -> dict[str, int]:
        s = self.poc_start
        gen_wind_down = s + self.poc_length
        validate = gen_wind_down + self.wind_down
        val_wind_down = validate + self.validation_length
        inference = val_wind_down + self.wind_down
        return {
            "epoch_index": self.epoch_index,
            "poc_start": s,
            "poc_generation_wind_down": gen_wind_down,
            "poc_generation_end": validate,
            "poc_validation_start": validate,
            "poc_validation_wind_down": val_wind_down,
            "poc_validation_end": inference,
            "set_new_validators": inference,
            "claim_money": inference + 1,
            "next_poc_start": s + self.epoch_length,
        }

    @property
    def phase(self) -> str:
        self.sync()
        st, h = self.stages(), self.height
        if h < st["poc_generation_wind_down"]:
            return "PoCGenerate"
        if h < st["poc_validation_start"]:
            return "PoCGenerateWindDown"
        if h < st["poc_validation_wind_down"]:
            return "PoCValidate"
        if h < st["poc_validation_end"]:
            return "PoCValidateWindDown"
        return "Inference"

    @property
    def in_poc_window(self) -> bool:
        return self.phase in POC_PHASES

    def blocks_until_next_poc(self) -> int:
        self.sync()
        return 0 if self.in_poc_window else self.stages()["next_poc_start"] - self.height

    def timing(self) -> dict[str, Any]:
        """`onboarding.timing` of `GET nodes` and `GET poc/timing` (admin `timing_calculator.go`)."""
        blocks = self.blocks_until_next_poc()
        per_block = self.block_time if self.block_time > 0 else NOMINAL_BLOCK_SECONDS
        in_window = self.in_poc_window
        return {
            "current_phase": self.phase,
            "blocks_until_next_poc": blocks,
            "seconds_until_next_poc": round(blocks * per_block, 3),
            # [inference] online from a tenth of an epoch before PoC until it ends
            "should_be_online": in_window or self.confirmation_poc_active
            or blocks <= max(1, self.epoch_length // 10),
            "in_poc_window": in_window,
            "confirmation_poc_active": self.confirmation_poc_active,
        }

    def latest(self) -> dict[str, Any]:
        """`GET /v1/epochs/latest` of the public API (shape of REFERENCE.md §7; extra stage names inferred)."""
        self.sync()
        stages = self.stages()
        nxt = {k: (v + self.epoch_length if k != "epoch_index" else v + 1) for k, v in stages.items()}
        return {
            "block_height": self.height,
            "latest_epoch": {"index": self.epoch_index, "poc_start_block_height": self.poc_start},
            "phase": self.phase,
            "epoch_stages": stages,
            "next_epoch_stages": nxt,
            "epoch_params": {
                "epoch_length": self.epoch_length,
                "poc_stage_duration": self.poc_length,
                "poc_validation_duration": self.validation_length,
                "poc_exchange_duration": self.wind_down,
            },
            "is_confirmation_poc_active": self.confirmation_poc_active,
        }

    # -- moving it (stand-in control) -------------------------------------------------------------

    def _set_height(self, height: int) -> None:
        self._base_height, self._base_time = height, self.clock()

    def advance(self, blocks: int) -> None:
        self._set_height(self.height + blocks)
        self.sync()

    def open_poc(self) -> None:
        """Start the next epoch's PoC now: a new epoch whose poc_start is the next block."""
        self.sync()
        if self.in_poc_window:
            return
        self.epoch_index += 1
        self.poc_start = self.height + 1
        self._set_height(self.poc_start)

    def start_validation(self) -> None:
        self.sync()
        if self.in_poc_window:
            self._set_height(self.stages()["poc_validation_start"])

    def close_poc(self) -> None:
        """End the PoC window now: jump to the first Inference block of this epoch."""
        self.sync()
        if self.in_poc_window:
            self._set_height(self.stages()["poc_validation_end"])
