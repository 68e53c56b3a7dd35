"""Command-line interface: ``ncflow train`` (more subcommands attach to the parser).

Results go to stdout (a text summary, or JSON with ``--json``); progress, notes and
the list of written files go to stderr. A user error (an invalid option value, a
missing file) prints one line ``ncflow COMMAND: error: ...`` to stderr and exits
with status 2; a training run that stops on a non-finite state, or whose full-batch
loss ends above its start, exits with 1. Ctrl-C
prints one line ending in ``interrupted`` to stderr and exits with status 130.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ncflow._numeric import exp_or_inf, is_number
from ncflow._validation import (
    InvalidArgument,
    check_int,
    check_path,
    check_positive,
)
from ncflow.data import Dataset, load_dataset, load_digits
from ncflow.flow import Trajectory
from ncflow.losses import BINARY_LOSSES, LOSSES
from ncflow.network import ACTIVATIONS
from ncflow.report_io import (
    dumps,
    make_directories,
    remove_empty_directories,
    write_json_atomic,
)
from ncflow.training import (
    DEFAULT_EPS,
    DEFAULT_GAUSSIAN_VARIANCE,
    DEFAULT_STEPS,
    DEFAULT_WIDTH,
    INITS,
    MAX_STEPS,
    TrainingRun,
    TrajectoryMetrics,
    summarize,
    train,
    trajectory_metrics,
)

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
# 128 + SIGINT, the status a shell gives a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130

DIGITS = "digits"
DEFAULT_DIGIT_CLASSES = (0, 1, 2)
DATA_SUFFIXES = (".npz", ".csv")
DIGIT_IMAGE_SHAPE = (8, 8)

# The progress bar is updated once per this many steps, which keeps the cost of
# tqdm's update calls out of the steps of small problems.
PROGRESS_EVERY = 50


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ncflow`` parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="ncflow",
        description=(
            "Train shallow ReLU networks and measure Neural Collapse as in Min, "
            "Zhu and Vidal (NeurIPS 2025)."
        ),
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_command(subcommands)
    add_replay_command(subcommands)
    add_verify_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ncflow`` command line and return its exit status."""
    parser = build_parser()
    argv = _attach_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        # argparse exits after --help (status 0) and after a usage error (status 2,
        # message already on stderr); main returns the status instead.
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE

    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except (InvalidArgument, FileNotFoundError) as error:
        print(f"ncflow {args.command}: error: {_error_text(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl-C that a handler does not catch itself (while loading data, or
        # writing files after the results were printed) ends here. Files already
        # written are kept.
        print(f"ncflow {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _attach_negative_values(argv: list[str]) -> list[str]:
    """Return ``argv`` with each negative value that follows a long option
    written as ``--option=value``.

    argparse reads ``-1e-3`` as an option name (its pattern for negative
    numbers, ``^-\\d+$|^-\\d*\\.\\d+$`` in Python 3.11, has no exponent), and
    ``-1,2`` too, so ``--step -1e-3`` and ``--classes -1,2`` failed with
    "expected one argument" instead of the checks' messages.
    """
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        takes_value = previous.startswith("--") and "=" not in previous
        if takes_value and previous != "--" and _is_negative_value(token):
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def _is_negative_value(token: str) -> bool:
    """Return whether ``token`` is a negative number, or a list of numbers that
    starts with one (``-1,2``). A file name such as ``-1.npz`` is not."""
    if re.fullmatch(r"-[0-9.][0-9.,eE+-]*", token):
        return True
    return token.startswith("-") and is_number(token)


def _float_value(text: str) -> float:
    """Parse a float option; reject a value that float64 rounds to 0 or inf.

    Converted by ``float`` alone, ``--init-scale 1e-400`` was reported as
    ``--init-scale=0.0``, not as the value on the command line.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid number: {text!r}; give a decimal number such as 1e-3"
        ) from None
    mantissa = text.strip().lower().split("e")[0]
    if value == 0 and any(digit in mantissa for digit in "123456789"):
        raise argparse.ArgumentTypeError(
            f"{text} underflows to 0 in float64; give a value of at least 5e-324"
        )
    if math.isinf(value) and "inf" not in text.lower():
        raise argparse.ArgumentTypeError(
            f"{text} overflows float64; give a value below 1.7e308"
        )
    return value


def _error_text(error: Exception) -> str:
    if isinstance(error, FileNotFoundError) and error.filename is not None:
        return f"{error.strerror}: {error.filename}"
    return str(error)


# --------------------------------------------------------------------------------
# ncflow train
# --------------------------------------------------------------------------------


def add_train_command(subcommands: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to the subparsers of :func:`build_parser`."""
    command = subcommands.add_parser(
        "train",
        help="train a two-layer ReLU network and report Neural Collapse metrics",
        description=(
            "Train f(x) = V relu(W^T x) from a small initialisation by full-batch "
            "gradient descent on the summed loss (time t = step x steps is "
            "gradient-flow time), or by minibatch SGD, and report the loss, "
            "||theta||^2, the rank-3 error of the data and of the learned features, "
            "the NC metrics and the activation-pattern separation."
        ),
    )
    data = command.add_argument_group("data")
    data.add_argument(
        "--data",
        default=DIGITS,
        metavar="SOURCE",
        help="'digits' (the bundled 8x8 digits of scikit-learn) or a .npz/.csv file "
        "(default: digits)",
    )
    data.add_argument(
        "--classes",
        default=None,
        metavar="LIST",
        help="comma-separated classes to keep: digits 0..9 for --data digits "
        "(default: 0,1,2), class names for a file (default: all)",
    )
    data.add_argument(
        "--no-center",
        action="store_true",
        help="digits only: do not subtract the mean image of the selected samples",
    )

    network = command.add_argument_group("network")
    network.add_argument(
        "--width",
        type=int,
        default=DEFAULT_WIDTH,
        metavar="H",
        help=f"number of neurons h (default: {DEFAULT_WIDTH})",
    )
    network.add_argument(
        "--init",
        choices=INITS,
        default="gaussian",
        help="initialisation (default: gaussian)",
    )
    network.add_argument(
        "--init-scale",
        type=_float_value,
        default=None,
        metavar="SCALE",
        help="gaussian: the variance of every weight (default: "
        f"{DEFAULT_GAUSSIAN_VARIANCE:g}); balanced and semilocal: the initial scale "
        f"eps (default: {DEFAULT_EPS:g})",
    )
    network.add_argument(
        "--loss",
        choices=LOSSES,
        default=None,
        help="loss, summed over the samples (default: cross_entropy for K > 2 "
        "classes, exponential for K = 2)",
    )
    network.add_argument(
        "--activation",
        choices=ACTIVATIONS,
        default="relu",
        help="activation function (default: relu)",
    )

    schedule = command.add_argument_group("training")
    length = schedule.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"number of steps (default: {DEFAULT_STEPS})",
    )
    length.add_argument(
        "--time",
        type=_float_value,
        default=None,
        metavar="T",
        help="gradient-flow time T to reach, in ceil(T / ETA) steps",
    )
    schedule.add_argument(
        "--step",
        type=_float_value,
        default=None,
        metavar="ETA",
        help="fixed step size (default: 1 / (n X_max), which is stable at a small "
        "initialisation)",
    )
    schedule.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="B",
        help="minibatch SGD with batches of B samples, on the minibatch loss scaled "
        "by n/B (default: full-batch gradient descent)",
    )
    schedule.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initialisation and of the minibatch order (default: 0)",
    )

    output = command.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help="print the summary as JSON, nothing else on stdout",
    )
    output.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write report.json and PNG plots into DIR, creating it. A diverged "
        "run gets only the loss and NC plots of the records before its last state",
    )
    output.add_argument(
        "--quiet",
        action="store_true",
        help=(
            "no progress bar and no notes on stderr, except those which warn that "
            "printed numbers mislead (an underflowing start, a rising loss)"
        ),
    )
    command.set_defaults(handler=run_train)
    return command


def run_train(args: argparse.Namespace) -> int:
    """Carry out ``ncflow train`` for parsed arguments; return the exit status.

    Ctrl-C during training keeps no partial run, so it writes nothing and removes
    the ``--out`` directories it created, which are still empty. After training,
    the summary is printed before the files are written, so that an interruption
    while they are written still shows it.
    """
    if args.out is not None:
        args.out = check_path(
            "--out", args.out, fix="give a directory such as --out train-report"
        )
    dataset = _train_dataset(args)
    options = _train_options(args, dataset)
    created = [] if args.out is None else _make_directory(args.out)

    try:
        run = _train_with_progress(args, dataset, options)
    except KeyboardInterrupt:
        remove_empty_directories(created)
        print(
            "ncflow train: interrupted during training; nothing was written",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED

    summary = summarize(run)
    warning_notes = _warning_notes(run)
    summary["notes"] = _notes(args, run, warning_notes)
    if args.json:
        sys.stdout.write(dumps(summary))
    else:
        _print_summary(summary, sys.stdout)
    sys.stdout.flush()

    written = []
    if args.out is not None:
        written = _write_outputs(args.out, run, summary, digits=args.data == DIGITS)
    printed_notes = summary["notes"] if not args.quiet else warning_notes
    for note in printed_notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK if run.status >= 0 and not _loss_rose(run) else EXIT_RUN_FAILED


def _loss_rose(run: TrainingRun) -> bool:
    """Return whether full-batch gradient descent ended above its start's loss.

    The flow's loss never increases, so such a run does not follow it. SGD is
    left out, whose loss may rise from noise alone. A diverged run is reported
    as such already.
    """
    if run.settings.method == "sgd" or run.diverged:
        return False
    log_loss = run.trajectory.log_loss
    return bool(log_loss[-1] > log_loss[0])


def _train_with_progress(
    args: argparse.Namespace, dataset: Dataset, options: dict[str, Any]
) -> TrainingRun:
    """Train on one BLAS thread, with a progress bar unless quiet or JSON."""
    # One step multiplies matrices of a few thousand entries, where BLAS threads
    # only add synchronisation: on a 2-core machine busy with other work, two
    # OpenBLAS threads made a step 27 times slower than one. One thread also fixes
    # the order of the reductions, so the result does not depend on the core count.
    # threadpoolctl is a dependency of scikit-learn.
    from threadpoolctl import threadpool_limits

    with (
        threadpool_limits(limits=1, user_api="blas"),
        _ProgressBar(options["steps"], disabled=args.quiet or args.json) as update,
    ):
        return train(dataset, progress=update, **options)


def _train_dataset(args: argparse.Namespace) -> Dataset:
    """Load the data named by ``--data``, ``--classes`` and ``--no-center``."""
    if args.data == DIGITS:
        digits = _digit_classes(args.classes)
        return load_digits(digits, center=not args.no_center)

    path = Path(args.data)
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise InvalidArgument(
            f"--data={args.data!r} is invalid: unknown file type {path.suffix!r}; give "
            f"'digits' or a file ending in {' or '.join(DATA_SUFFIXES)}"
        )
    if not path.is_file():
        raise InvalidArgument(
            f"--data={args.data!r} is invalid: file not found; check the path"
        )
    if args.no_center:
        raise InvalidArgument(
            "--no-center is invalid with a data file: it applies to --data digits "
            "only; centre the file's samples before saving them if needed"
        )
    try:
        dataset = load_dataset(path)
    except InvalidArgument as error:
        # The loader names its argument path=; here the option is --data.
        prefix = f"path={str(path)!r}"
        text = str(error)
        if not text.startswith(prefix):
            raise
        raise InvalidArgument(f"--data={args.data!r}{text[len(prefix) :]}") from None
    if args.classes is None:
        return dataset
    names = _class_tokens(args.classes)
    unknown = [name for name in names if name not in dataset.class_names]
    if unknown:
        raise InvalidArgument(
            f"--classes={args.classes!r} is invalid: {', '.join(map(repr, unknown))} "
            f"not among the classes of {args.data} {list(dataset.class_names)!r}"
        )
    return dataset.subset(names)


def _class_tokens(text: str) -> list[str]:
    tokens = [token.strip() for token in text.split(",")]
    if any(token == "" for token in tokens):
        raise InvalidArgument(
            f"--classes={text!r} is invalid: it has an empty entry; separate the "
            "classes by single commas, e.g. 0,1,2"
        )
    repeated = sorted({token for token in tokens if tokens.count(token) > 1})
    if repeated:
        raise InvalidArgument(
            f"--classes={text!r} is invalid: it repeats {', '.join(repeated)}; name "
            "each class once"
        )
    if len(tokens) < 2:
        raise InvalidArgument(
            f"--classes={text!r} is invalid: it must name at least two classes, such "
            "as 0,1"
        )
    return tokens


def _digit_classes(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_DIGIT_CLASSES
    digits = []
    for token in _class_tokens(text):
        if not token.isdigit() or int(token) > 9:
            raise InvalidArgument(
                f"--classes={text!r} is invalid: {token!r} is not a digit 0..9; give "
                "digits separated by commas, e.g. 0,1,2"
            )
        digits.append(int(token))
    if len(set(digits)) != len(digits):
        raise InvalidArgument(
            f"--classes={text!r} is invalid: it repeats a digit; name each digit once"
        )
    return tuple(digits)


def _train_options(args: argparse.Namespace, dataset: Dataset) -> dict[str, Any]:
    """Check the network and training options, naming the flags in every error."""
    width = check_int("--width", args.width, 1, fix="use at least one neuron, e.g. 50")
    init_scale = args.init_scale
    if init_scale is not None:
        init_scale = check_positive(
            "--init-scale", init_scale, fix="use a small positive scale such as 1e-6"
        )
    if args.loss in BINARY_LOSSES and dataset.K != 2:
        raise InvalidArgument(
            f"--loss={args.loss} is invalid for K={dataset.K} classes: binary losses "
            "need two classes; use --loss cross_entropy"
        )
    step = args.step
    if step is not None:
        step = check_positive("--step", step, fix="use a positive step such as 1e-3")

    steps = args.steps
    if args.time is not None:
        check_positive("--time", args.time, fix="give a positive gradient-flow time")
    elif steps is None:
        steps = DEFAULT_STEPS
    else:
        steps = check_int(
            "--steps", steps, 1, MAX_STEPS, fix=f"take 1 to {MAX_STEPS:.0e} steps"
        )
    batch_size = args.batch_size
    if batch_size is not None:
        batch_size = check_int(
            "--batch-size",
            batch_size,
            1,
            dataset.n,
            fix=f"use 1..{dataset.n} (n, the number of samples), or omit it for "
            "full-batch gradient descent",
        )
    seed = check_int("--seed", args.seed, 0, fix="use a non-negative integer")

    options = {
        "width": width,
        "init": args.init,
        "init_scale": init_scale,
        "loss": args.loss,
        "activation": args.activation,
        "steps": steps,
        "time": args.time,
        "step": step,
        "batch_size": batch_size,
        "seed": seed,
    }
    return options


class _ProgressBar:
    """Context manager giving a ``progress(done, total)`` callback for a tqdm bar.

    The bar is on stderr, and tqdm leaves it out when stderr is not a terminal.
    """

    def __init__(self, total: int | None, *, disabled: bool) -> None:
        self.total = total
        self.disabled = disabled
        self.bar = None

    def __enter__(self) -> Callable[[int, int], None] | None:
        if self.disabled:
            return None
        from tqdm import tqdm

        # disable=None lets tqdm leave the bar out when stderr is not a terminal.
        self.bar = tqdm(
            total=self.total, file=sys.stderr, unit="step", desc="train", disable=None
        )
        return self.update

    def update(self, done: int, total: int) -> None:
        bar = self.bar
        if bar.total != total:
            bar.total = total
        if done - bar.n >= PROGRESS_EVERY or done == total:
            bar.update(done - bar.n)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _notes(
    args: argparse.Namespace, run: TrainingRun, warning_notes: list[str]
) -> list[str]:
    notes = []
    settings = run.settings
    if args.data == DIGITS:
        if settings.method == "sgd":
            schedule = f"{_count(run.steps, 'SGD step')} of batch {settings.batch_size}"
        else:
            schedule = _count(run.steps, "full-batch gradient-descent step")
        notes.append(
            f"these are the bundled 8x8 digits of scikit-learn (n={run.dataset.n}), "
            "not MNIST, trained with "
            f"{schedule}; Min, Zhu and Vidal (NeurIPS 2025) train on MNIST digits "
            "0, 1, 2 with 50 epochs of SGD (batch 1000, learning rate 0.1) and "
            "report rank-3 relative errors of about 61 % for the raw data and "
            "0.2 % for the learned features"
        )
    if settings.method == "sgd":
        notes.append(
            "SGD time t = step x k is nominal: the iterates do not follow the "
            "gradient flow"
        )
    if not run.completed:
        notes.append(
            f"training stopped after {_count(run.steps, 'step')}: {run.message}"
        )
    reached = exp_or_inf(run.log_t)
    if args.time is not None and run.completed and reached > 1.01 * args.time:
        # Whole steps only: a time shorter than a step still takes one.
        notes.append(
            f"t = {reached:.4g} is past --time {args.time:g}, because the run "
            f"takes whole steps of {settings.step:.4g}; give a smaller --step to "
            "end closer to it"
        )
    notes.extend(warning_notes)
    if args.out is not None and run.diverged:
        notes.append(_divergence_plot_note(run))
    return notes


def _warning_notes(run: TrainingRun) -> list[str]:
    """Return the notes which warn that printed numbers mislead: a start whose
    products underflow, or a loss that rose. ``--quiet`` keeps them."""
    notes = []
    underflow = _underflow_note(run.params0)
    if underflow:
        notes.append(underflow)
    if _loss_rose(run):
        # In logs, because a finite log L above 709 overflows math.exp.
        log_loss = run.trajectory.log_loss
        notes.append(
            f"the loss rose from log L = {log_loss[0]:.4f} to "
            f"{log_loss[-1]:.4f}, which the gradient flow never does: "
            "the steps are too large to follow it (see "
            "step_times_curvature_bound_at_start in the JSON settings); reduce "
            "--step. The exit status is 1"
        )
    return notes


def _underflow_note(params0) -> str:
    """Return a note where the start's weights are so small that the products
    of two of them (outputs, ``||theta||^2``) underflow float64, else ''."""
    largest = max(float(np.max(np.abs(params0.W))), float(np.max(np.abs(params0.V))))
    # A product of two weights is below the smallest normal float64 once the
    # largest weight is below its square root.
    limit = math.sqrt(np.finfo(np.float64).tiny)
    if not 0.0 < largest < limit:
        return ""
    return (
        f"the largest initial weight is {largest:.3g}, below {limit:.3g}, so "
        "products of two weights (the outputs, ||theta||^2) underflow float64 and "
        "print as 0; choose --init-scale of at least 1e-150"
    )


def _divergence_plot_note(run: TrainingRun) -> str:
    """Return the note on the figures that ``--out`` gets for a diverged run."""
    records_before = run.records_before_divergence
    if records_before <= 1:
        return (
            "the run diverged, and no record after t = 0 precedes its last state, "
            "so --out has no figures. report.json has the records"
        )
    before = run.trajectory.head(records_before)
    step_count = _record_steps(before, run.settings.step)[-1]
    return (
        "the run diverged, so --out has no figures of its last state. "
        "loss_norm.png and nc_metrics.png end at the last record before it, at "
        f"step {step_count}"
    )


def _count(number: int, noun: str) -> str:
    """Return ``number`` with ``noun``, in the plural unless it is 1."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _write_outputs(
    directory: Path, run: TrainingRun, summary: dict, *, digits: bool
) -> list[Path]:
    """Write ``report.json`` and the PNG plots into ``directory``; return the paths.

    A diverged run gets only the plots of the records before its last state.
    """
    metrics = trajectory_metrics(run)
    try:
        if run.diverged:
            plot_paths = _write_plots_before_divergence(directory, run, metrics)
        else:
            plot_paths = _write_plots(directory, run, metrics, digits=digits)
        report = _report(run, summary, metrics, plot_paths)
        report_path = write_json_atomic(directory / "report.json", report)
    except OSError as error:
        raise InvalidArgument(
            f"--out={str(directory)!r} is invalid: writing into it failed "
            f"({error.strerror}: {error.filename}); choose a writable directory"
        ) from None
    return [report_path, *plot_paths]


def _make_directory(directory: Path) -> list[Path]:
    """Create the ``--out`` directory before training, so a bad path fails at once.

    Returns the directories created, for :func:`remove_empty_directories`.
    """
    try:
        return make_directories(directory)
    except OSError as error:
        raise InvalidArgument(
            f"--out={str(directory)!r} is invalid: the directory cannot be created "
            f"({error.strerror}); choose a writable directory"
        ) from None


def _write_plots(
    directory: Path, run: TrainingRun, metrics: TrajectoryMetrics, *, digits: bool
) -> list[Path]:
    """Draw the plots of a run; the group weights as 8x8 images for the digits only."""
    from ncflow import plots
    from ncflow.flow import default_groups
    from ncflow.network import features

    problem = run.problem
    nominal = run.settings.method == "sgd"
    phi = features(problem.X, run.params.W, problem.activation)
    paths = [
        plots.plot_loss_and_norm(
            run.trajectory, directory / "loss_norm.png", nominal_time=nominal
        ),
        plots.plot_nc_metrics(
            metrics, directory / "nc_metrics.png", nominal_time=nominal
        ),
        plots.plot_pca(
            problem.X,
            phi,
            problem.labels,
            run.dataset.class_names,
            directory / "pca.png",
        ),
    ]
    if digits:
        groups = default_groups(problem, run.params.V)
        paths.append(
            plots.plot_group_weights(
                run.params.W,
                groups,
                run.dataset.class_names,
                directory / "group_weights.png",
                image_shape=DIGIT_IMAGE_SHAPE,
            )
        )
    return paths


def _write_plots_before_divergence(
    directory: Path, run: TrainingRun, metrics: TrajectoryMetrics
) -> list[Path]:
    """Draw the loss, norm and NC curves of the records before the diverged state.

    The PCA and group-weight figures show only the last state, so they are not
    drawn. Nothing is drawn when only the record at t = 0, which the log-time axes
    leave out, precedes the divergence.
    """
    from ncflow import plots

    records_before = run.records_before_divergence
    if records_before <= 1:
        return []
    nominal = run.settings.method == "sgd"
    return [
        plots.plot_loss_and_norm(
            run.trajectory.head(records_before),
            directory / "loss_norm.png",
            nominal_time=nominal,
        ),
        plots.plot_nc_metrics(
            metrics.head(records_before),
            directory / "nc_metrics.png",
            nominal_time=nominal,
        ),
    ]


def _record_steps(trajectory: Trajectory, step: float) -> np.ndarray:
    """Return the step count of each record, which is at t = count * step."""
    return np.rint(np.exp(trajectory.log_t) / step).astype(np.int64)


def _report(
    run: TrainingRun,
    summary: dict,
    metrics: TrajectoryMetrics,
    plot_paths: list[Path],
) -> dict:
    """Return the contents of ``report.json``: summary, trajectory and plot names."""
    trajectory = run.trajectory
    return {
        "summary": summary,
        "trajectory": {
            "steps": _record_steps(trajectory, run.settings.step),
            "log_t": trajectory.log_t,
            "log_loss": trajectory.log_loss,
            "norm2": trajectory.norm2,
            "kind": trajectory.kind.tolist(),
            "nc1": metrics.nc1,
            "nc2": metrics.nc2,
            "nc3": metrics.nc3,
            "undefined": metrics.undefined,
        },
        "plots": [path.name for path in plot_paths],
    }


def _format(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "undefined"
    return format(value, spec)


def _print_summary(summary: dict, stream: TextIO) -> None:
    """Print the summary of :func:`ncflow.training.summarize` as text."""
    data, settings, result = summary["dataset"], summary["settings"], summary["result"]
    nc, a1, separation = summary["nc"], summary["a1"], summary["separation"]
    rank3 = summary["rank3_relative_error"]

    if settings["method"] == "sgd":
        method = f"minibatch SGD (batch {settings['batch_size']})"
        time_kind = "nominal time"
    else:
        method = "full-batch gradient descent"
        time_kind = "gradient-flow time"
    scale_name = "variance" if settings["init"] == "gaussian" else "eps"
    lines = [
        f"data: {data['name']}, n={data['n']}, D={data['D']}, K={data['K']} "
        f"(classes {', '.join(data['class_names'])})",
        f"network: width {settings['width']}, {settings['init']} init "
        f"({scale_name} {settings['init_scale']:g}), {settings['loss']} loss "
        f"(summed), {settings['activation']}",
        f"training: {method}, {_count(result['steps'], 'step')} of "
        f"{settings['step']:.4g}"
        + ("" if result["epochs"] is None else f" ({result['epochs']:.3g} epochs)")
        + f", t = {result['t']:.4g} ({time_kind}); {result['message']}",
    ]
    if result["diverged"]:
        lines += [
            f"result: DIVERGED: the last state has L = {result['loss']:.4g} "
            f"and ||theta||^2 = {result['norm2']:.4g}, so its training accuracy, "
            "feature rank errors, NC metrics and activation pattern are not "
            "reported; reduce --step",
            f"rank-3 relative error: raw data X {_percent(rank3['X'])}",
            _a1_line(a1),
            _separation_line(separation, settings["activation"]),
            f"runtime: {summary['runtime_s']:.3g} s",
        ]
        stream.write("\n".join(lines) + "\n")
        return
    lines += [
        f"result: L = {result['loss']:.4g} (log L = {result['log_loss']:.4f}), "
        f"||theta||^2 = {result['norm2']:.4g}, training accuracy "
        f"{100 * result['train_accuracy']:.1f} %",
        f"rank-3 relative error: raw data X {_percent(rank3['X'])}, learned "
        f"features phi {_percent(rank3['phi'])}",
    ]
    rank_K = summary.get("rankK_relative_error")
    if rank_K is not None and rank_K["rank"] != 3:
        lines.append(
            f"rank-{rank_K['rank']} (= K) relative error: raw data X "
            f"{_percent(rank_K['X'])}, learned features phi {_percent(rank_K['phi'])}"
        )
    lines += [
        f"NC (paper): NC1 {_format(nc.get('nc1'))}, NC2 {_format(nc.get('nc2'))}, "
        f"NC3 {_format(nc.get('nc3'))}",
        f"NC (Papyan et al.): NC1 {_format(nc.get('nc1_standard'))}, NC2 "
        f"{_format(nc.get('nc2_standard'))}"
        # Two centred means are always antipodal, an ETF of two vectors.
        + (" (0 for any two classes)" if data["K"] == 2 else "")
        + f", NC3 {_format(nc.get('nc3_standard'))}, "
        f"NC4 agreement {_format(nc.get('nc4'))}",
        _a1_line(a1),
        _separation_line(separation, settings["activation"]),
        f"runtime: {summary['runtime_s']:.3g} s",
    ]
    for key, reason in nc.get("undefined", {}).items():
        lines.append(f"undefined: {key}: {reason}")
    stream.write("\n".join(lines) + "\n")


def _percent(value: float | None) -> str:
    return "undefined" if value is None else f"{100 * value:.2f} %"


def _a1_line(a1: dict) -> str:
    line = f"A1 on the data: mu_s = {a1['mu_s']:.3f}, mu_d = {a1['mu_d']:.3f}"
    if a1["holds"]:
        return line + " (A1 holds)"
    return line + (
        f" (A1 fails: {100 * a1['violating_within_share']:.1f} % of within-class "
        f"pairs have cosine <= 0 and {100 * a1['violating_cross_share']:.1f} % of "
        "cross-class pairs have cosine >= 0)"
    )


def _separation_line(separation: dict, activation: str) -> str:
    if separation["first_t"] is not None:
        first = f"first separated at t = {separation['first_t']:.4g}"
    else:
        first = "never separated with the groups of v_j(0)"
    if separation["at_end"] is None:
        end = f"the pattern at the end is not reported ({separation['reason_at_end']})"
    elif separation["at_end"]:
        end = "separated at the end"
    else:
        end = f"not separated at the end ({separation['reason_at_end']})"
    line = f"activation pattern: {first}; {end}"
    if activation == "linear":
        # The pattern is that of relu on the same pre-activations.
        line += " (the signs of W^T x; the linear network does not use them)"
    return line


# --------------------------------------------------------------------------------
# ncflow replay
# --------------------------------------------------------------------------------


def add_replay_command(subcommands: Any) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to the subparsers of :func:`build_parser`."""
    command = subcommands.add_parser(
        "replay",
        help="check the claims of counterexample records again",
        description=(
            "Check the claim of each counterexample record again, from the data, "
            "initial shapes and run settings stored in the record, and print the "
            "recorded verdict beside the new one. Exit status: 0 when every claim "
            "now holds (PASS), 1 when any fails or is INCONCLUSIVE (a record of an "
            "exploration X1-X8 whose counterexample is found again, FOUND, counts "
            "as failing), 2 for a file that is missing, not a record, or modified "
            "since it was written, 130 when interrupted."
        ),
    )
    command.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="a record (.npz) written by theory_checks.records.write_record, a "
        "directory whose .npz files are all records, or the --out directory of "
        "ncflow verify (its counterexamples/ records are replayed)",
    )
    command.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list with the recorded and the new verdict of each file, "
        "nothing else on stdout",
    )
    command.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr"
    )
    command.set_defaults(handler=run_replay)
    return command


def run_replay(args: argparse.Namespace) -> int:
    """Carry out ``ncflow replay`` for parsed arguments; return the exit status."""
    from theory_checks.records import replay
    from theory_checks.verdict import Outcome

    # Every file is read and its hash verified before any check runs, so that a
    # bad file stops the command before minutes of integration.
    paths, empty_reports = _record_paths(args.files)
    for report in empty_reports:
        print(
            f"ncflow replay: {report} is an ncflow verify report without "
            "counterexample records; nothing to replay there",
            file=sys.stderr,
        )
    records = _read_before_replay(paths)

    # Ctrl-C stops the replays, and those that finished are printed as usual.
    results = []
    interrupted = False
    try:
        for record in records:
            if not args.quiet:
                print(f"replaying {record.path} ({record.claim})", file=sys.stderr)
            verdict, recorded = replay(record)
            results.append((record, verdict, recorded))
    except KeyboardInterrupt:
        interrupted = True

    if args.json:
        sys.stdout.write(dumps([_replay_entry(*result) for result in results]))
    else:
        for record, verdict, _ in results:
            _print_replay(record, verdict, sys.stdout)
        _print_replay_totals(results, sys.stdout)
    if interrupted:
        print(
            f"ncflow replay: interrupted after {len(results)} of {len(records)} "
            "records; the output lists those replayed",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    all_pass = all(verdict.outcome is Outcome.PASS for _, verdict, _ in results)
    return EXIT_OK if all_pass else EXIT_RUN_FAILED


def _read_before_replay(paths: list[Path]) -> list:
    """Read every record of ``paths`` before any is replayed.

    When there are several, the error lists each file to fix and states that no
    record was replayed, because a bad file stops the whole command.
    """
    from theory_checks.records import RecordError, read_record

    records, errors = [], []
    for path in paths:
        try:
            records.append(read_record(path))
        except RecordError as error:
            if len(paths) == 1:
                raise
            errors.append((path, error))
    if errors:
        listed = "\n".join(f"  {error}" for _, error in errors)
        bad = ", ".join(str(path) for path, _ in errors)
        raise RecordError(
            f"{len(errors)} of {len(paths)} files are not valid records:\n{listed}\n"
            f"No record was replayed, because ncflow replay reads all {len(paths)} "
            f"files before it replays any: fix or remove {bad}, then run the "
            "command again"
        )
    return records


def _record_paths(arguments: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Expand directories to the ``.npz`` files in them, sorted by name.

    A directory without records whose ``counterexamples`` subdirectory has some,
    such as the ``--out`` directory of ``ncflow verify``, gives those. Returns
    the paths and the ``verify`` report directories that hold no record (a
    clean run writes none, which is no error).
    """
    from theory_checks.verify import COUNTEREXAMPLE_DIR

    paths = []
    empty_reports = []
    for argument in arguments:
        if not argument.is_dir():
            paths.append(argument)
            continue
        found = _npz_files(argument)
        if not found:
            found = _npz_files(argument / COUNTEREXAMPLE_DIR)
        if not found and (argument / "report.json").is_file():
            empty_reports.append(argument)
            continue
        if not found:
            raise InvalidArgument(
                f"FILE={str(argument)!r} is invalid: neither the directory nor its "
                f"{COUNTEREXAMPLE_DIR}/ subdirectory contains .npz records; give "
                "record files or a directory of them"
            )
        paths.extend(found)
    return paths, empty_reports


def _npz_files(directory: Path) -> list[Path]:
    """Return the visible ``.npz`` files in ``directory``, sorted, or [] if none."""
    if not directory.is_dir():
        return []
    return sorted(
        path for path in directory.glob("*.npz") if not path.name.startswith(".")
    )


def _replay_entry(record: Any, verdict: Any, recorded: dict) -> dict:
    return {
        "path": str(record.path),
        "claim": record.claim,
        "hash": record.hash,
        "created": record.created,
        "recorded_outcome": recorded["outcome"],
        "outcome": verdict.outcome.value,
        # As the text output reads it: an exploration's FAIL is FOUND.
        "shown_outcome": _shown_outcome(record, verdict.outcome.value),
        "holds": verdict.passed,
        "recorded": recorded,
        "replayed": verdict.to_dict(),
    }


def _print_replay(record: Any, verdict: Any, stream: TextIO) -> None:
    """Print one record: what it is, its recorded verdict and the new verdict."""
    example = record.example
    dataset = example.dataset
    faults = ", ".join(example.faults) if example.faults else "none"
    packages = record.environment.get("packages", {})
    versions = ", ".join(
        f"{name} {version}" for name, version in packages.items() if version
    )
    lines = [
        f"{record.path}: claim {record.claim}",
        f"  example {example.label or '(no label)'}: dataset {dataset.name!r}, "
        f"n={dataset.n}, D={dataset.D}, K={dataset.K}, h={example.shapes.width}, "
        f"eps {example.eps:.3g}, {example.loss} loss, {example.activation}, "
        f"planted faults: {faults}",
        f"  recorded {record.created or '(no time)'} with {versions or 'unknown'}:",
        _indent(record.recorded_verdict().describe(), "    "),
        "  replayed now:",
        _indent(verdict.describe(), "    "),
        f"  result: {_replay_result(record, verdict)}",
        "",
    ]
    stream.write("\n".join(lines) + "\n")


def _replay_result(record: Any, verdict: Any) -> str:
    """Describe the new outcome beside the recorded one, in the words of verify.

    An exploration record (X1-X8) stores a case that breaks a claim outside the
    theorem's hypotheses, so its FAIL reads FOUND, as in the table of verify.
    """
    exploration = _is_exploration(record)
    outcome = verdict.outcome.value
    recorded = record.verdict["outcome"]
    if outcome == recorded:
        change = "as recorded"
    elif exploration and recorded == "FAIL":
        change = "recorded FOUND"
    else:
        change = f"recorded {recorded}"
    if outcome == "PASS" and exploration:
        return (
            "the claim holds on this case, which is no longer a counterexample "
            f"(PASS, {change})"
        )
    if outcome == "PASS":
        return f"the claim holds (PASS, {change})"
    if outcome == "FAIL" and exploration:
        return f"the exploration's counterexample is found again (FOUND, {change})"
    if outcome == "FAIL":
        return f"the claim still fails (FAIL, {change})"
    return (
        f"INCONCLUSIVE ({change}): a hypothesis or run condition could not be "
        "verified, so the claim does not hold as verified"
    )


def _is_exploration(record: Any) -> bool:
    return record.claim.startswith("X")


def _print_replay_totals(results: list, stream: TextIO) -> None:
    """Print the count of each outcome, with exploration FAILs counted as FOUND."""
    counts = {"PASS": 0, "FAIL": 0, "FOUND": 0, "INCONCLUSIVE": 0}
    for record, verdict, _ in results:
        counts[_shown_outcome(record, verdict.outcome.value)] += 1
    noun = "record" if len(results) == 1 else "records"
    found = f"{counts['FOUND']} FOUND, " if counts["FOUND"] else ""
    stream.write(
        f"replayed {len(results)} {noun}: {counts['PASS']} PASS, {counts['FAIL']} "
        f"FAIL, {found}{counts['INCONCLUSIVE']} INCONCLUSIVE\n"
    )


def _shown_outcome(record: Any, outcome: str) -> str:
    """Return ``outcome`` as verify's table reads it: FOUND for the FAIL of an
    exploration."""
    return "FOUND" if outcome == "FAIL" and _is_exploration(record) else outcome


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# --------------------------------------------------------------------------------
# ncflow verify
# --------------------------------------------------------------------------------


def add_verify_command(subcommands: Any) -> argparse.ArgumentParser:
    """Add the ``verify`` subcommand to the subparsers of :func:`build_parser`.

    Options left out take the defaults of ``theory_checks.verify.VerifyConfig``,
    which is imported only when the command runs, since it loads Hypothesis.
    """
    command = subcommands.add_parser(
        "verify",
        help="check every claim and exploration of the theorem on drawn examples",
        description=(
            "Draw examples from a seed, train each once, check every claim of the "
            "theorem of Min, Zhu and Vidal (NeurIPS 2025) on them and run the "
            "counterexample searches X1-X8. Prints one table and writes a report "
            "directory (report.md, report.json, figures, counterexample records). "
            "Records in DIR/counterexamples that an earlier run left are kept, "
            "listed apart in report.md and on stderr, and left out of the report. "
            "Exit status: 0 when every claim C1-C14 and E1-E3 that ran is PASS; 1 "
            "when one is FAIL, or INCONCLUSIVE on more than a fifth of its "
            "examples, or a check raised an error, or a task was lost; 2 for an "
            "invalid option; "
            "130 when interrupted. Explorations that find a counterexample and "
            "claims whose module is missing (NOT AVAILABLE) do not fail the run."
        ),
    )
    command.add_argument(
        "--profile",
        metavar="NAME",
        help="budget: dev (a few examples per claim, about 15 s on two cores), "
        "ci (25 per claim), thorough (500 per claim); default dev",
    )
    command.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes, one thread each; 1 runs in this process "
        "(default: the number of cores)",
    )
    command.add_argument(
        "--seed",
        type=int,
        help="seed of every draw, >= 0 (default: a fixed seed, the same every run)",
    )
    command.add_argument(
        "--out",
        metavar="DIR",
        help="report directory, created if missing (default ncflow-report/); "
        "records an earlier run left in it are kept and listed apart",
    )
    command.add_argument(
        "--claims",
        metavar="IDS",
        help="comma-separated claim and exploration ids to run, e.g. C1,C7,X1 "
        "(default: all)",
    )
    command.add_argument(
        "--max-examples",
        type=int,
        metavar="N",
        help="examples per family, and cases an exploration draws before it "
        "gives up (1 to 100000), overriding the profile. The examples column of "
        "an exploration also counts the cases tried while shrinking a violation "
        "it found",
    )
    command.add_argument("--no-plots", action="store_true", help="write no PNG figures")
    command.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr"
    )
    command.set_defaults(handler=run_verify)
    return command


def run_verify(args: argparse.Namespace) -> int:
    """Carry out ``ncflow verify`` for parsed arguments; return the exit status."""
    from theory_checks.interrupts import checkpoint, deferred

    # Ctrl-C is deferred while the checks import, as _entry.py defers it while the
    # command line imports. Raised inside an import, it could end the process
    # by SIGINT after the status 130 was printed.
    with deferred():
        from theory_checks.verify import (
            TABLE_LEGEND,
            Interrupted,
            VerifyConfig,
            table_lines,
            verify,
        )
    checkpoint()

    claims = None
    if args.claims is not None:
        tokens = [token.strip() for token in args.claims.split(",")]
        # A value with no id at all is left to validate_config, which rejects it.
        if "" in tokens and len(tokens) > 1:
            raise InvalidArgument(
                f"--claims={args.claims!r} is invalid: it has an empty entry; "
                "separate the ids by single commas, e.g. C1,C7,X1"
            )
        claims = tuple(token for token in tokens if token)
    options = {
        "profile": args.profile,
        "seed": args.seed,
        "out": args.out,
        "max_examples": args.max_examples,
    }
    config = VerifyConfig(
        jobs=args.jobs,
        claims=claims,
        plots=not args.no_plots,
        **{name: value for name, value in options.items() if value is not None},
    )
    progress = None if args.quiet else _verify_progress()
    try:
        report = verify(config, progress)
    except Interrupted as stop:
        _print_interrupted(stop, sys.stderr)
        return EXIT_INTERRUPTED

    sys.stdout.write("\n".join(table_lines(report)) + "\n")
    sys.stdout.write(textwrap.fill(TABLE_LEGEND + ".", width=88) + "\n")
    for text in report.lost:
        print(f"lost: {text}", file=sys.stderr)
    _print_earlier_records(report, sys.stderr)
    print(
        f"verify: {report.seconds:.1f} s with {report.config.jobs} job(s); report in "
        f"{report.config.out}/report.md",
        file=sys.stderr,
    )
    return EXIT_RUN_FAILED if report.failed or report.lost else EXIT_OK


def _print_earlier_records(report: Any, stream: TextIO) -> None:
    earlier = report.earlier_records
    if not earlier:
        return
    directory = report.config.out / "counterexamples"
    print(
        f"verify: {len(earlier)} record(s) in {directory} are left from an earlier "
        "run and not part of this report; ncflow replay on the directory replays "
        "them too, so delete them or use a new --out:",
        file=stream,
    )
    for name in earlier:
        print(f"  {name}", file=stream)


def _verify_progress() -> Callable[..., None]:
    done = [0]

    def progress(task: Any, result: Any, message: str) -> None:
        if result is None:
            print(f"verify: {message}", file=sys.stderr)
            return
        done[0] += 1
        print(
            f"verify: [{done[0]}] {task.name} done in {result.seconds:.1f} s",
            file=sys.stderr,
        )

    return progress


def _print_interrupted(stop: Any, stream: TextIO) -> None:
    report = stop.report
    if report is None:
        print(
            "verify: interrupted while drawing examples; nothing was written",
            file=stream,
        )
        return
    if report.complete:
        print(
            f"verify: interrupted while drawing the figures; the report of every task "
            f"is in {report.config.out}/report.md, without figures",
            file=stream,
        )
    else:
        print("verify: interrupted", file=stream)
    directory = report.config.out / "counterexamples"
    listing = ":" if report.records else ""
    print(
        f"verify: {len(report.records)} counterexample record(s) kept in "
        f"{directory}{listing}",
        file=stream,
    )
    for name in report.records:
        print(f"  {name}", file=stream)
    if not report.complete:
        print(
            f"verify: partial report of the finished tasks in {report.config.out}/"
            "report.json (complete: false)",
            file=stream,
        )
    _print_earlier_records(report, stream)
