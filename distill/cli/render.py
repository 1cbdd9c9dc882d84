"""Render a run's events in the terminal: progress, per-level health, warnings, report.

One renderer for every source of events: a run trained in this process, and a run
followed over the server's stream; both hand it `Event`s. It reads the payloads' own
field names.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
)
from rich.table import Table

from distill.constants import ERROR_REDUCTION_UNIT
from distill.events import (
    CAUSE_UTILIZATION,
    CodebookWarning,
    CodesExtracted,
    CopiesMeasured,
    DatasetScanned,
    DecoderStageProgress,
    DecoderStageTrained,
    EpochMetrics,
    Event,
    GenerationMeasured,
    LevelHealth,
    MemorizationWarning,
    ModelSaved,
    Payload,
    PreviewReady,
    PriorEpochMetrics,
    PriorStepMetrics,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunInterrupted,
    RunQueued,
    RunStarted,
    StepMetrics,
)
from distill.models.health import judged, low_utilization_levels
from distill.progress import duration, epochs_remaining, remaining_seconds

EPOCHS_PACED = 5  # the latest epochs whose mean length paces the time left (as on the page)


def stage_words(trained: DecoderStageTrained) -> str:
    """What the decoder stage did, before and after on the held-out sounds."""
    kept = "" if trained.helped else " (it did not help sounds it never heard: kept as it started)"
    return (
        f"decoder stage: {trained.steps} steps, {trained.seconds:.0f} s; on the held-out "
        f"sounds, the loss {trained.val_loss_baseline:.3f} -> {trained.val_loss:.3f} and the "
        f"magnitude's spectral convergence {trained.val_convergence_baseline:.3f} -> "
        f"{trained.val_convergence:.3f} (the mel's pseudo-inverse -> the stage){kept}"
    )


def health_table(levels: list[LevelHealth], title: str | None = None) -> Table:
    """The per-level codebook table; levels under the warning threshold in red."""
    table = Table(title=title, title_justify="left")
    columns = (
        "level", "utilization", "perplexity", "dead codes",
        f"error reduction ({ERROR_REDUCTION_UNIT}, held-out)", "vectors",
    )  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for h in levels:
        style = "bold red" if h in low_utilization_levels(levels) else None
        table.add_row(
            str(h.level),
            f"{h.utilization:.0%}" if judged(h) else f"{h.utilization:.0%} (too few vectors)",
            f"{h.perplexity:.1f} / {h.codebook_size}",
            str(h.dead_codes),
            f"{h.error_reduction:+.4f}",
            str(h.vectors),
            style=style,
        )
    return table


def health_inline(levels: list[LevelHealth]) -> str:
    """One line of per-level health, for each epoch, ending with the vectors counted."""
    parts = []
    weak = low_utilization_levels(levels)
    for h in levels:
        color = "red" if h in weak else "green" if judged(h) else "yellow"
        parts.append(
            f"L{h.level} [{color}]{h.utilization:.0%}[/] ppl {h.perplexity:.1f} dead {h.dead_codes}"
        )
    counted = f" ({levels[0].vectors} vectors)" if levels and levels[0].vectors else ""
    return " | ".join(parts) + counted


def preflight_table(scan: DatasetScanned) -> Table:
    table = Table(show_header=False, title="dataset", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("folder", scan.dataset)
    table.add_row(
        "usable files",
        f"{len(scan.files_used)} ({scan.train_files} train, {scan.val_files} validation)",
    )
    table.add_row("skipped files", str(len(scan.files_skipped)))
    table.add_row("audio", f"{scan.total_seconds:.1f} s")
    codes = scan.codebook_size * scan.rvq_levels
    table.add_row(
        "audible latent vectors",
        f"{scan.latent_vectors} for {scan.rvq_levels} levels x {scan.codebook_size} codes = {codes} codes",
    )
    enough = scan.latent_vectors >= scan.codebook_size
    verdict = (
        "[green]enough for k-means[/]"
        if enough
        else "[red]fewer vectors than codes: k-means will duplicate codes[/]"
    )
    table.add_row("k-means init", verdict)
    table.add_row("suggested codebook size", str(scan.suggested_codebook_size))
    return table


def codes_table(codes: CodesExtracted) -> Table:
    """What a prior trains on: the files, their codes, the window, the warning line."""
    table = Table(show_header=False, title="prior data", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", codes.model_path)
    table.add_row("folder", codes.dataset)
    table.add_row(
        "usable files",
        f"{len(codes.files_used)} ({codes.train_files} train, {codes.val_files} validation)",
    )
    table.add_row("codes", f"{codes.train_tokens} train, {codes.val_tokens} validation (audible)")
    table.add_row(
        "window",
        f"{codes.context_steps} steps x {codes.rvq_levels} levels of {codes.codebook_size} codes",
    )
    table.add_row(
        "memorization warning",
        f"validation perplexity under {codes.memorization_threshold:g}, a widening gap to the "
        "training perplexity, or sampled clips that replay training files",
    )
    return table


class RunRenderer:
    """Feeds on payloads in order; owns the progress bar while a run is live."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.last_epoch: EpochMetrics | None = None
        self.epochs: dict[int, EpochMetrics] = {}
        self.warnings: list[CodebookWarning] = []
        self.model_path: str | None = None
        self.run_dir: Path | None = None
        self.prior_epochs: dict[int, PriorEpochMetrics] = {}
        self.memorization_warnings: list[MemorizationWarning] = []
        self.copies: CopiesMeasured | None = None  # a run recorded before GenerationMeasured
        self.generation: GenerationMeasured | None = None
        self.stage: DecoderStageTrained | None = None
        self.planned_epochs = 0
        self.epoch_seconds: list[float] = []  # every finished epoch's, this attempt
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        self.show(event.typed())

    def show(self, payload: Payload) -> None:
        """One payload: a run's, or one no run produced (`train --check`'s preflight)."""
        handler = getattr(self, f"on_{payload.kind}", None)
        if handler:
            handler(payload)

    def on_run_queued(self, queued: RunQueued) -> None:
        self.console.print("[dim]queued: waiting for a worker[/]")

    def on_run_interrupted(self, interrupted: RunInterrupted) -> None:
        self._stop_progress()
        self.console.print(f"[yellow]interrupted[/]: {interrupted.reason}")
        if interrupted.checkpoint_path:
            self.console.print(f"last checkpoint: {interrupted.checkpoint_path}")

    def on_dataset_scanned(self, scan: DatasetScanned) -> None:
        self.console.print(preflight_table(scan))
        for skipped in scan.files_skipped:
            self.console.print(f"[yellow]skipped[/] {skipped.path}: {skipped.reason}")

    def on_run_started(self, started: RunStarted) -> None:
        resumed = f", resuming at epoch {started.start_epoch + 1}" if started.start_epoch else ""
        self.console.print(
            f"training {started.epochs} epochs of {started.steps_per_epoch} steps{resumed}"
        )
        self.planned_epochs, self.started = started.epochs, time.monotonic()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=True,
        )
        self.progress.start()

    def on_step_metrics(self, step: StepMetrics | PriorStepMetrics) -> None:
        if self.progress is None:
            return
        description = f"epoch {step.epoch + 1}"
        if self.task is None or self.progress.tasks[0].description != description:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                description, total=step.steps_per_epoch, loss="-", eta=""
            )
        within = (step.step + 1) / step.steps_per_epoch
        left = epochs_remaining(
            self.epoch_seconds[-EPOCHS_PACED:], self.planned_epochs - step.epoch, within,
            time.monotonic() - self.started,
        )  # fmt: skip
        eta = f"epochs: {duration(left)} left" if left is not None else ""
        self.progress.update(self.task, completed=step.step + 1, loss=f"{step.loss:.4f}", eta=eta)

    def on_prior_step_metrics(self, step: PriorStepMetrics) -> None:
        self.on_step_metrics(step)  # the same progress bar: epoch, step, loss

    def on_codes_extracted(self, codes: CodesExtracted) -> None:
        self.console.print(codes_table(codes))
        for skipped in codes.files_skipped:
            self.console.print(f"[yellow]skipped[/] {skipped.path}: {skipped.reason}")
        if codes.dataset_changed:
            self.console.print(
                "[yellow]the dataset changed since the model was trained[/]: its codes may "
                "fit these files less well"
            )

    def on_prior_epoch_metrics(self, m: PriorEpochMetrics) -> None:
        self.prior_epochs[m.epoch] = m
        self.epoch_seconds.append(m.seconds)
        best = self.prior_epochs.get(m.best_epoch, m)
        marker = " [bold]best[/]" if m.best_epoch == m.epoch else ""
        self.console.print(
            f"epoch {m.epoch + 1}/{m.epochs}  train {m.train_loss:.4f}  val {m.val_loss:.4f}  "
            f"train perplexity {m.train_perplexity:.2f}  val perplexity {m.val_perplexity:.2f}{marker}  "
            f"(best so far: epoch {best.epoch + 1}, {best.val_perplexity:.2f})  {m.seconds:.1f}s"
        )

    def on_copies_measured(self, copies: CopiesMeasured) -> None:
        self.copies = copies

    def on_generation_measured(self, generation: GenerationMeasured) -> None:
        self.generation = generation

    def on_memorization_warning(self, warning: MemorizationWarning) -> None:
        self.memorization_warnings.append(warning)
        self.console.print(f"  [bold red]warning[/] epoch {warning.epoch + 1}: {warning.message}")

    def on_epoch_metrics(self, m: EpochMetrics) -> None:
        self.last_epoch = m
        self.epoch_seconds.append(m.seconds)
        self.epochs[m.epoch] = m
        best = " [bold]best[/]" if m.best_epoch == m.epoch else ""
        error = f"mel error {m.val_mel_error:.3f}  " if m.val_mel_error is not None else ""
        self.console.print(
            f"epoch {m.epoch + 1}/{m.epochs}  {error}train {m.train_loss:.4f}  "
            f"val {m.val_loss:.4f}  commitment {m.val_commit_loss:.4f}{best}  {m.seconds:.1f}s"
        )
        if m.train_levels:
            self.console.print(f"  train    {health_inline(m.train_levels)}")
        self.console.print(f"  held-out {health_inline(m.val_levels)}")

    def on_codebook_warning(self, warning: CodebookWarning) -> None:
        self.warnings.append(warning)
        self.console.print(f"  [bold red]warning[/] epoch {warning.epoch + 1}: {warning.message}")

    def on_preview_ready(self, preview: PreviewReady) -> None:
        if preview.clips:
            folder = Path(preview.clips[0].reconstruction_wav).parent
            self.console.print(f"  previews: {folder}/ ({len(preview.clips)} clips)")

    def on_model_saved(self, saved: ModelSaved) -> None:
        self.model_path = saved.path

    def on_decoder_stage_progress(self, step: DecoderStageProgress) -> None:
        if self.progress is None:
            return
        if self.task is None or self.progress.tasks[0].description != "decoder stage":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task("decoder stage", total=step.steps, loss="-", eta="")
        left = remaining_seconds(step.step, step.steps, step.seconds)
        eta = f"stage: {duration(left)} left" if left is not None else ""
        self.progress.update(self.task, completed=step.step, loss=f"{step.train_loss:.4f}", eta=eta)

    def on_decoder_stage_trained(self, trained: DecoderStageTrained) -> None:
        self.stage = trained
        self.console.print(stage_words(trained))

    def on_run_completed(self, done: RunCompleted) -> None:
        self._stop_progress()
        if self.prior_epochs:
            self._prior_report(done)
            return
        self.console.rule("training complete")
        if self.last_epoch:
            m = self.last_epoch
            self.console.print(
                f"final epoch: train loss {m.train_loss:.4f}, validation loss {m.val_loss:.4f}, "
                f"commitment {m.val_commit_loss:.4f}"
            )
        self.console.print(
            f"best epoch: {done.best_epoch + 1} (validation loss {done.best_val_loss:.4f}), "
            f"{done.seconds:.0f} s in all; the model keeps the best epoch"
        )
        self._print_stop(done, self.last_epoch.epochs if self.last_epoch else 0)
        best = self.epochs.get(done.best_epoch, self.last_epoch)
        if best and best.val_mel_error is not None:
            self.console.print(
                f"mel error on the held-out sounds' own frames: [bold]{best.val_mel_error:.3f}[/]"
                " (mean |log-mel error|, padding left out)"
            )
        if best:
            if best.train_levels:
                title = f"codebook health (epoch {best.epoch + 1}, training files)"
                self.console.print(health_table(best.train_levels, title=title))
            title = f"codebook health (epoch {best.epoch + 1}, held-out files)"
            self.console.print(health_table(best.val_levels, title=title))
        self._print_warning_summary()
        if self.stage is not None and self.stage.helped:
            self.console.print("its sounds play through the decoder stage it trained")
        elif self.stage is not None:
            self.console.print(
                "its decoder stage stayed the mel's pseudo-inverse, so its sounds play as "
                "through Griffin-Lim; more, or more varied, sounds give the stage more to learn"
            )
        self.console.print(f"model: [bold]{done.model_path}[/]")

    def _prior_report(self, done: RunCompleted) -> None:
        self.console.rule("prior training complete")
        best = self.prior_epochs.get(done.best_epoch)
        last = self.prior_epochs[max(self.prior_epochs)]
        self.console.print(
            f"final epoch: train loss {last.train_loss:.4f}, validation loss {last.val_loss:.4f}, "
            f"validation perplexity {last.val_perplexity:.2f}"
        )
        if best is not None:
            self.console.print(
                f"best epoch: {best.epoch + 1} (validation perplexity {best.val_perplexity:.2f}), "
                f"{done.seconds:.0f} s in all; the model keeps the best epoch"
            )
        self._print_stop(done, last.epochs)
        if self.generation is not None:
            self.console.print(
                f"its sounds: {self.generation.sampled_clips} clips generated from the kept prior, "
                "measured against yours"
            )
            for word, sentence in self.generation.words():
                self.console.print(f"  [bold]{word:<10}[/] {escape(sentence)}")
        elif self.copies is not None:
            c = self.copies
            self.console.print(
                f"copy rate: {c.copies} of {c.sampled_clips} clips sampled from the kept prior "
                f"replay a training file ({c.copy_rate:.0%}; it warns at {c.threshold:.0%})"
            )
        warnings = self.memorization_warnings
        if warnings:
            causes = sorted({w.cause for w in warnings})
            epochs = ", ".join(str(w.epoch + 1) for w in warnings)
            self.console.print(
                f"[bold red]{len(warnings)} memorization warning(s)[/] ({', '.join(causes)}) "
                f"in epoch(s) {epochs}: {warnings[-1].message}"
            )
        else:
            self.console.print("no memorization warnings")
        self.console.print(f"model (now with a prior): [bold]{done.model_path}[/]")
        self.console.print(f"next: distill generate {Path(done.model_path).stem} --seconds 4")

    def _print_stop(self, done: RunCompleted, epochs: int) -> None:
        words = done.stop_words(epochs)
        if words:
            self.console.print(f"[yellow]{words}[/]")

    def _print_warning_summary(self) -> None:
        """One line per level that warned, not one per warning: 30 epochs x 4 levels is noise."""
        if not self.warnings:
            self.console.print("no warnings")
            return
        by_level: dict[tuple[int, str], list[CodebookWarning]] = {}
        for w in self.warnings:
            by_level.setdefault((w.level, w.cause), []).append(w)
        self.console.print(f"[bold red]{len(self.warnings)} warning(s)[/]:")
        for (level, cause), warnings in sorted(by_level.items()):
            epochs = ", ".join(str(w.epoch + 1) for w in warnings)
            what = "utilization" if cause == CAUSE_UTILIZATION else "of level 1's error reduction"
            self.console.print(
                f"  level {level}: under {warnings[-1].threshold:.0%} {what} in "
                f"{len(warnings)} epoch(s) ({epochs}); latest: {warnings[-1].message}"
            )

    def on_run_cancelled(self, cancelled: RunCancelled) -> None:
        self._stop_progress()
        self.console.print(
            f"[yellow]stopped[/] during epoch {cancelled.epoch + 1}; checkpoint kept at {cancelled.checkpoint_path}"
        )

    def on_run_failed(self, failed: RunFailed) -> None:
        self._stop_progress()
        self.console.print(f"[bold red]training failed[/]: {failed.error}")
        if failed.checkpoint_path:
            self.console.print(f"last checkpoint: {failed.checkpoint_path}")

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.task = None


class JsonLinesRenderer:
    """`--json`: one JSON object per event, for scripts.

    A line is the event as the schema has it (events.Event: `run_id`, `seq`, `kind`,
    `payload`, `ts`), the same whether the run is in this process or on a server, so a
    script can tell runs apart and follow on after a seq (`distill runs follow --after`).
    """

    def __init__(self, console: Console | None = None):
        self.console = console

    def __call__(self, event: Event) -> None:
        self._print({**event.to_dict(), "payload": event.typed().to_dict()})

    def show(self, payload: Payload) -> None:
        """A payload no run produced (`train --check`): no run_id, seq or ts to give."""
        self._print({"kind": payload.kind, "payload": payload.to_dict()})

    def _print(self, line: dict) -> None:
        print(json.dumps(line), flush=True)
