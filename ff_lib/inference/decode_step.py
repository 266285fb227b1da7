"""The decode step of BatchedLM: one token for every live row, captured as a CUDA graph per
(rows, KV length) bucket on a GPU, eager on a CPU; and chained greedy steps.

Every step ends with a greedy tail on the device: the repetition penalty (the sampler's per-row
`seen` and `penalty`), the argmax, and the chosen tokens and next positions written into the
step's own inputs. A chain replays the step back to back with no host work in between: step k+1
reads the tokens step k chose while the host reads step k's (copied to pinned memory behind an
event), checks ends, stops and arrivals, and ends the chain within a step. Only greedy rows
without log-probabilities chain; other batches take one step at a time, sampled on the host.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ff_lib.inference import kernels
from ff_lib.inference.ops import repetition_penalized

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CPU_CHAIN_KEYS = 16  # on a CPU a chain reads this many keys past its longest row (masked)


def row_bucket(n: int, max_rows: int) -> int:
    """Rows a graph is captured for when n rows decode: the next bucket, but never more than
    the cache has (a host may hold, say, 5 rows when memory is short)."""
    return min(next(b for b in ROW_BUCKETS if b >= n), max_rows)


def kv_buckets(max_len: int) -> list[int]:
    """KV lengths the decode graphs are captured for: 256, 512, 1024, then every 1024."""
    sizes = [256, 512, 1024]
    while sizes[-1] < max_len:
        sizes.append(sizes[-1] + 1024)
    return sorted({min(s, max_len) for s in sizes})


@dataclass
class _Chain:
    ids: torch.Tensor  # (4, rows): tokens, positions, slots, 1 = record the token as seen
    run: object  # runs one step (replays the graph)
    n: int
    host: list  # two buffers the chosen tokens are copied to (pinned on CUDA)
    events: list  # (CUDA) one event after each buffer's copy
    issued: int = 0


class DecodeSteps:
    """The decode half of BatchedLM (a mixin: it uses the model's layers, cache and slots)."""

    _sampler_state = None  # (seen (max_rows, vocab) bool, penalty (max_rows,) float32)
    _chain: _Chain | None = None

    def attach_sampler(self, seen: torch.Tensor, penalty: torch.Tensor) -> None:
        """The sampler's per-row state the greedy tail reads (and, chained, updates)."""
        self._sampler_state = (seen, penalty)

    def decode(self, tokens: list[int], positions: list[int], slots: list[int]) -> torch.Tensor:
        """One step for rows 0..len(tokens)-1: float32 logits (rows, vocab). On CUDA they are
        the graph's output buffer: read them before the next step."""
        n = len(tokens)
        with self.lock, torch.inference_mode():
            ids, run, rows, _ = self._runner(n, max(positions) + 1, self._any_lora(slots))
            self._fill(ids, rows, tokens, positions, slots, chained=False)
            return run()[:n]

    def start_chain(self, tokens: list[int], positions: list[int], slots: list[int]) -> int:
        """Prepare chained steps for rows 0..n-1 (all greedy, no log-probabilities); how many
        steps fit the KV bucket (at least 1)."""
        n, longest = len(tokens), max(positions) + 1
        want = longest if self.use_graphs else min(self.max_len, longest + CPU_CHAIN_KEYS)
        with self.lock, torch.inference_mode():
            ids, run, rows, kv = self._runner(n, want, self._any_lora(slots))
            self._fill(ids, rows, tokens, positions, slots, chained=True)
            host = [torch.empty(n, dtype=torch.long, pin_memory=self.use_graphs) for _ in "ab"]
            events = [torch.cuda.Event() for _ in "ab"] if self.use_graphs else []
        self._chain = _Chain(ids, run, n, host, events)
        return kv - max(positions)

    def chain_step(self) -> int:
        """Queue one chained step; a handle for chain_read."""
        chain = self._chain
        j = chain.issued % 2
        with self.lock, torch.inference_mode():
            chain.run()
            chain.host[j].copy_(chain.ids[0, : chain.n], non_blocking=bool(chain.events))
            if chain.events:
                chain.events[j].record()
        chain.issued += 1
        return j

    def chain_read(self, handle: int) -> list[int]:
        """The tokens a queued chained step chose (waits for that step only)."""
        chain = self._chain
        if chain.events:
            chain.events[handle].synchronize()
        return chain.host[handle].tolist()

    def _any_lora(self, slots: list[int]) -> bool:
        # A batch where no row uses an adapter skips the LoRA kernels altogether.
        return any(s != self.slots.none_slot for s in slots)

    def _runner(self, n: int, kv: int, lora: bool):
        """(ids (4, rows) the step reads, run() -> float32 logits (rows, vocab), rows, the KV
        length it reads: kv's bucket with graphs, kv itself without)."""
        if not self.use_graphs:
            ids = self._graph_inputs(n)
            return ids, lambda: self._full_step(ids, kv, lora), n, kv
        rows = row_bucket(n, self.max_rows)
        kv = next(b for b in kv_buckets(self.max_len) if b >= kv)
        graph, ids, logits = self._graph(rows, kv, lora)

        def run():
            graph.replay()
            return logits

        return ids, run, rows, kv

    def _fill(self, ids, rows: int, tokens, positions, slots, chained: bool) -> None:
        """One copy for every input of the step (its rows past len(tokens) are padding)."""
        n = len(tokens)
        pad = [0] * (rows - n)
        none = [self.slots.none_slot] * (rows - n)
        flags = [int(chained)] * n + pad
        ids.copy_(torch.tensor([tokens + pad, positions + pad, slots + none, flags]))

    def _full_step(self, ids, kv: int, lora: bool) -> torch.Tensor:
        """A step reading `ids`, then its greedy tail; float32 logits."""
        logits = self._decode_step(ids[0], ids[1], ids[2], kv, lora)
        if self._sampler_state is not None:
            self._greedy_tail(logits, ids)
        return logits

    def _greedy_tail(self, logits, ids) -> None:
        """The sampler's repetition penalty and argmax on the device (its exact arithmetic);
        the chosen tokens become the next step's, positions advance, and rows flagged in ids[3]
        record their token as seen."""
        seen, penalty = self._sampler_state
        rows = ids.shape[1]
        seen_rows = seen[:rows]
        chosen = repetition_penalized(logits, seen_rows, penalty[:rows, None]).argmax(-1)
        at = chosen[:, None]
        seen_rows.scatter_(1, at, seen_rows.gather(1, at) | ids[3, :, None].bool())
        ids[0].copy_(chosen)
        ids[1].add_(1)

    def _decode_step(self, tok, pos, slot, kv: int, lora: bool) -> torch.Tensor:
        """float32 logits of one step. Device-side only (no .item(), no branch on values):
        safe to capture."""
        x = F.embedding(tok, self.lm.model.embed_tokens.weight)
        lora = self._lora(slot, kernel=self.kernels) if lora else None
        attend = (self._kernel_attend if self.kernels else self._torch_attend)(pos, kv)
        ops = {**self.ops, "add_norm": kernels.add_rms_norm} if self.kernels else self.ops
        return self._head(self._layers_forward(x, lora, attend, ops)).float()

    def _kernel_attend(self, pos, kv: int):
        """Decode attention with the Triton kernels: rotary, the cache write and split-KV
        attention over each row's own length in one launch (Qwen3's q/k norms first, then
        torch's rotary, a cache write and the attention kernel)."""
        lengths = pos + 1
        fused_rope = self.fused_rope
        cos = sin = at = None
        if not fused_rope:
            cos, sin = self.cos.index_select(0, pos), self.sin.index_select(0, pos)
            at = self._cache_index(pos)

        def attend(i, qkv):
            kc, vc = self.k_cache[i], self.v_cache[i]
            if fused_rope:
                return kernels.rope_decode_attention(
                    qkv, self.cos, self.sin, kc, vc, lengths, kv, self.n_heads
                )
            q, k, v = self._rotated(i, qkv, cos, sin, self.ops)
            kc.index_put_(at, k)
            vc.index_put_(at, v)
            return kernels.decode_attention(q.contiguous(), kc, vc, lengths, kv)

        return attend

    def _cache_index(self, pos):
        """Index tensors that place each row's new key/value at (row, every kv head, pos)."""
        n = pos.shape[0]
        return (
            torch.arange(n, device=self.device)[:, None],
            torch.arange(self.n_kv, device=self.device)[None, :],
            pos[:, None],
        )

    def _torch_attend(self, pos, kv: int):
        """Decode attention with torch's SDPA (CPU, and models the kernels do not cover)."""
        n = pos.shape[0]
        cos, sin = self.cos.index_select(0, pos), self.sin.index_select(0, pos)
        allowed = self.key_pos[None, :kv] <= pos[:, None]
        attn_mask = torch.where(allowed, 0.0, self._neg).to(self.dtype)[:, None, None, :]
        group = self.n_heads // self.n_kv
        at = self._cache_index(pos)

        def attend(i, qkv):
            q, k, v = self._rotated(i, qkv, cos, sin, self.ops)
            self.k_cache[i].index_put_(at, k)
            self.v_cache[i].index_put_(at, v)
            # The query heads sharing a KV head act as that head's query positions: no K/V
            # is repeated, and one mask (per row) covers them all.
            out = F.scaled_dot_product_attention(
                q.reshape(n, self.n_kv, group, self.head_dim),
                self.k_cache[i][:n, :, :kv],
                self.v_cache[i][:n, :, :kv],
                attn_mask=attn_mask,
            )
            return out.reshape(n, -1)

        return attend

    def _graph(self, rows: int, kv: int, lora: bool):
        key = (rows, kv, self.slots.version, lora and bool(self.slots.capacity))
        if key not in self._graphs:
            self._capture(*key)
        return self._graphs[key]

    def _graph_inputs(self, rows: int) -> torch.Tensor:
        """A step's inputs: tokens, positions, slots (none) and chain flags, a row each."""
        ids = torch.zeros(4, rows, dtype=torch.long, device=self.device)
        ids[2] = self.slots.none_slot
        return ids

    def _capture(self, rows: int, kv: int, version: int, lora: bool) -> None:
        ids = self._graph_inputs(rows)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._warm_runs(ids, kv, lora)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            logits = self._full_step(ids, kv, lora)
        self._pool = graph.pool()  # graphs share one memory pool (they never run at once)
        self._graphs[(rows, kv, version, lora)] = (graph, ids, logits)
        self.captures += 1

    def _warm_runs(self, ids, kv: int, lora: bool) -> None:
        """Run the step twice outside the capture (and compile), as graphs require. Graphs are
        captured while rows decode: the runs write their dummy keys at positions 0 and 1 of
        the bucket's cache rows, so those positions are put back afterwards."""
        rows = ids.shape[1]
        kept = [(k[:rows, :, :2].clone(), v[:rows, :, :2].clone()) for k, v in self._caches()]
        for _ in range(2):
            self._full_step(ids, kv, lora)
        for (k, v), (k_kept, v_kept) in zip(self._caches(), kept, strict=True):
            k[:rows, :, :2] = k_kept
            v[:rows, :, :2] = v_kept

    def _caches(self):
        return zip(self.k_cache, self.v_cache, strict=True)

    def end_chain(self) -> None:
        """Let go of the last chain (it holds its graph)."""
        self._chain = None

    def drop_stale_graphs(self) -> None:
        """Forget graphs captured for an older slot layout (after the slots grew)."""
        self._chain = None
        version = self.slots.version
        self._graphs = {k: v for k, v in self._graphs.items() if k[2] == version}
        if not self._graphs:
            self._pool = None  # the shared pool went with the last graph using it

    def warm_up(self, rows=(1,), kvs=(512, 1024)) -> None:
        """Capture the decode graphs a first reply will use, with and without an adapter
        (no-op without graphs). One slot of rank 16 is made first, so a first adapter of
        that rank does not change the slot layout the graphs were captured for."""
        self._first_slot()
        if not self.use_graphs:
            return
        with self.lock, torch.inference_mode():
            for r in rows:
                for kv in kvs:
                    for lora in (False, True):
                        self._graph(r, min(kv, self.max_len), lora)

    def _first_slot(self) -> None:
        """One slot of rank 16 before anything is captured or compiled (the common first
        adapter then changes no layout)."""
        with self.lock:
            if not self.slots.capacity:
                self.slots.reserve(1, 16)

    def compile_ahead(self) -> None:
        """Run one row's decode step, with and without an adapter, outside any graph: the
        compiled kernels get built exactly as warm_up's first capture would build them, and
        nothing is captured (safe while another thread copies weights to the GPU); then a short
        prefill, with and without an adapter, so that the first prompt loads no kernel."""
        self._first_slot()
        with self.lock, torch.inference_mode():
            ids = self._graph_inputs(1)  # the inputs a one-row graph reads
            for lora in (False, True):
                for _ in range(2):  # the capture runs the step twice before capturing
                    self._decode_step(ids[0], ids[1], ids[2], min(512, self.max_len), lora)
        for slot in (self.slots.none_slot, 0):  # the prefill's kernels loaded, with and without
            self.prefill(0, [1] * 16, slot)
        torch.cuda.synchronize(self.device)
