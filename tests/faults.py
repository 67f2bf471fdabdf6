"""The fault catalogue: what goes wrong around a run (kills, full disks, two writers, damaged
files, other hardware), what kdlab does about it, and the test that checks it.

A plain table: scripts/error_catalogue.py --faults prints it, docs/errors.md is generated from
it, and tests/test_reliability.py checks that every test it names exists, so it cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

RELIABILITY = "tests/test_reliability.py"


@dataclass(frozen=True)
class Fault:
    """One row: the fault as tried, what kdlab does, and `tests/FILE.py::test_name`."""

    fault: str
    response: str
    test: str


FAULTS = [
    Fault(
        "a second `kdlab train` into the run dir of one in progress",
        "refused in one line naming the running one's pid (exit 2); writes nothing there",
        f"{RELIABILITY}::test_a_second_run_into_a_running_run_dir_is_refused_and_a_killed_ones_lock_is_not",
    ),
    Fault(
        "the lock of a run killed with SIGKILL",
        "no stale lock: the kernel drops the flock with the process; `resume=true` goes on",
        f"{RELIABILITY}::test_a_second_run_into_a_running_run_dir_is_refused_and_a_killed_ones_lock_is_not",
    ),
    Fault(
        "`resume=true` with other settings than the run's (e.g. data.train_size, optim.lr)",
        "refused in one line naming each changed key with both values; only "
        "run_dir.MAY_CHANGE_ON_RESUME may differ (trainer.epochs may grow)",
        f"{RELIABILITY}::test_a_resume_with_changed_settings_is_refused_naming_them",
    ),
    Fault(
        "a run killed (SIGKILL) mid-epoch, then resumed",
        "resumes from the last epoch's checkpoint to the uninterrupted run's bits",
        f"{RELIABILITY}::test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result",
    ),
    Fault(
        "a FitNets run killed in stage two, then resumed",
        "resumes stage two; stage one is not trained again",
        f"{RELIABILITY}::test_a_fitnet_run_killed_in_stage_two_resumes_its_stage",
    ),
    Fault(
        "kills during checkpoint writes",
        "never a torn checkpoint (write to a temp file, fsync, rename); leftovers removed",
        f"{RELIABILITY}::test_kills_during_saves_never_leave_a_torn_checkpoint",
    ),
    Fault(
        "a disk that fills up while a checkpoint is saved",
        "one line (exit 2); the previous checkpoints kept intact",
        f"{RELIABILITY}::test_a_full_disk_while_saving_is_one_line_and_keeps_the_checkpoints",
    ),
    Fault(
        "an output dir that refuses writes",
        "one line before Hydra creates anything",
        f"{RELIABILITY}::test_an_output_dir_that_refuses_writes_is_one_line",
    ),
    Fault(
        "a checkpoint whose unpickling would run code",
        "refused (weights-only load); the code never runs",
        f"{RELIABILITY}::test_a_checkpoint_that_would_run_code_is_refused",
    ),
    Fault(
        "a loss that turns NaN/Inf",
        "the run stops in one line at that step, keeping the last good checkpoint",
        f"{RELIABILITY}::test_a_nonfinite_loss_stops_the_run_keeping_the_last_good_checkpoint",
    ),
    Fault(
        "NaN batches with `trainer.skip_nonfinite=true`",
        "exactly those batches are skipped and counted, no trace left in the weights",
        f"{RELIABILITY}::test_skip_nonfinite_skips_exactly_the_nan_batches_and_leaves_no_trace",
    ),
    Fault(
        "bad values and files (the bad-input table above)",
        "one line, exit 2, nothing of a finished run overwritten",
        "tests/test_bad_input.py::test_bad_input_is_one_line_exit_2_and_overwrites_nothing",
    ),
    Fault(
        "cached teacher logits, whatever batch composition filled them",
        "bit-identical to the online teacher's: whole training batches, store keyed on the "
        "batch size and numerics",
        "tests/test_logit_cache.py::test_every_steps_cached_logits_are_the_online_teachers_bit_for_bit",
    ),
    Fault(
        "a damaged logit cache (truncated file, flipped bit, NaN, bad flags or meta.json)",
        "caught by size checks and per-row checksums; set aside (a warning names it) and "
        "rebuilt, never trained on",
        "tests/test_logit_cache_integrity.py::test_a_damaged_store_is_set_aside_rebuilt_and_never_trained_on",
    ),
    Fault(
        "a complete logit cache on read-only storage",
        "reused without writing",
        "tests/test_logit_cache_integrity.py::test_a_complete_store_on_read_only_storage_is_reused",
    ),
    Fault(
        "TensorBoard curves after a kill and resume",
        "equal to the uninterrupted run's: the event files are cut at the checkpoint's epoch",
        "tests/test_tensorboard_resume.py::test_a_resumed_runs_curves_equal_the_uninterrupted_runs",
    ),
    Fault(
        "16-bit, palette, RGBA and CMYK images in an image folder",
        "decoded faithfully: 16-bit scaled to 8, transparency composited on white, CMYK and "
        "palettes converted",
        "tests/test_image_modes.py::test_every_mode_decodes_to_uint8_rgb_of_the_requested_size",
    ),
    Fault(
        "a checkpoint from more GPUs (CUDA RNG states) resumed on fewer",
        "resumes: checkpoints keep no per-GPU CUDA RNG list (kdlab draws from none)",
        "tests/test_runtime.py::test_a_checkpoint_saved_with_eight_gpus_restores_on_two",
    ),
    Fault(
        "`trainer.precision=auto` for `cuda:1` when GPU 0 is another model",
        "bf16 only where the run's own device computes it natively, else fp32",
        "tests/test_runtime.py::test_auto_precision_asks_the_gpu_it_trains_on",
    ),
    # --- issue 25 (branch `reliability`) ---
    Fault(
        "a distill run stopped after epoch 1, a newer teacher run appears, `resume=true`",
        "resumes with the teacher it started with (its path and sha256 in every checkpoint); "
        "refused in one line if that file changed or is gone",
        f"{RELIABILITY}::test_a_resumed_run_keeps_the_teacher_it_started_with",
    ),
    Fault(
        "another teacher's logits.npy/check.npy/filled.npy copied into a logit store",
        "every row fails its check (the store's name is in it): set aside and rebuilt",
        "tests/test_logit_cache_integrity.py::"
        "test_another_teachers_rows_copied_into_a_store_are_never_trained_on",
    ),
]
# --- issue 25, item 3 (branch `reliab3`) ---
FAULTS += [
    Fault(
        "a full disk (or a file-size limit) while Hydra writes the run's record .hydra/",
        "one line (exit 2); the run dir, or in a user's own dir the record, log and lock it "
        "added, removed",
        "tests/test_bad_records.py::"
        "test_a_disk_full_before_the_first_epoch_is_one_line_and_leaves_nothing_created",
    ),
    Fault(
        "a full disk under `kdlab predict --csv NEW_DIR/FILE` (any atomic write)",
        "one line (exit 2); no 0-byte file, no temp file, no dir it made (the CLI under a "
        "file-size limit: with -m slow)",
        "tests/test_bad_records.py::test_a_failed_atomic_write_leaves_neither_its_file_nor_the_dirs_it_made",
    ),
    Fault(
        "a run killed while writing metrics.jsonl (a torn last line)",
        "`kdlab report` and `resume=true` skip that line with a warning; a bad line before it "
        "is one line naming the file and line",
        "tests/test_bad_records.py::"
        "test_a_torn_last_metrics_line_is_skipped_with_a_warning_and_any_other_bad_line_named",
    ),
]
