"""Training throughput in the default mode against a plain fp32 NCHW PyTorch loop of the same network, in one run.

    python benchmarks/bench_train_throughput.py [--steps 8] [--width 0.25] [--batch 128] [--compile] [--channels-last
auto|yes|no] [--precision auto|fp32|bf16]
        [--models baseline,tanhconv] [--trainings natural,fgsm]

For cnn9 (baseline and tanhconv) on 32x32 inputs, natural and FGSM training: images per second of
``robustbench_dc.train``'s step (``batch_step``: ``training_batch`` + ``train_step`` in the mode ``train`` chooses for
this
device) and of a plain loop (fp32, NCHW, FGSM crafted with a plain gradient step). The two alternate, so both
see the same machine load. Goals: default/plain >= 2.5 for both models; tanhconv time <= 1.3x baseline's.
With ``--compile`` the fast side runs through ``torch.compile`` (``TrainConfig.compile``); the time its first
round took (compiling included) is printed apart and left out of the rate.
Inputs are random CIFAR-10-shaped images: speed does not depend on content.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from robustbench_dc.data import INFOS, ImageDataset
from robustbench_dc.devices import describe_device, resolve_device
from robustbench_dc.names import PRECISIONS
from robustbench_dc.train import TrainConfig, TrainingSteps, batch_step, build, place_for_training


def plain_step(model, opt, x, y, fgsm: bool, eps: float) -> None:
    if fgsm:  # half clean, half FGSM, as the regime does
        half = x.shape[0] // 2
        model.eval()
        xa = x[half:].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y[half:]), xa)
        x = torch.cat([x[:half], (xa + eps * g.sign()).clamp(0, 1).detach()])
        model.train()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(name: str, training: str, args, device) -> tuple[float, float, str]:
    config = TrainConfig(
        model=name,
        dataset="cifar10",
        width=args.width,
        training=training,
        batch_size=args.batch,
        seed=0,
        compile=args.compile,
        precision=args.precision,
        channels_last={"auto": None, "yes": True, "no": False}[args.channels_last],
    )
    n = args.batch * args.steps
    g = torch.Generator().manual_seed(0)
    data = ImageDataset(
        INFOS["cifar10"],
        "train",
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        "random",
    ).to(device)
    fast, plain = build(config), build(config)
    mode = place_for_training(fast, config, device)
    fast.train()
    plain.to(device).train()
    opt_f = torch.optim.SGD(fast.parameters(), lr=0.01, momentum=0.9)
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    batches = torch.arange(n).split(args.batch)

    runner = TrainingSteps(fast, config.compile)

    def run_fast() -> float:
        t = time.perf_counter()
        for idx in batches:
            runner.run(lambda m, idx=idx: batch_step(m, data, idx, config, True, g, mode, opt_f, None), g)
        _sync(device)
        return n / (time.perf_counter() - t)

    def run_plain() -> float:
        t = time.perf_counter()
        for idx in batches:
            x, y = data.float_images(idx.to(device)), data.labels[idx.to(device)]
            plain_step(plain, opt_p, x, y, training == "fgsm", config.eps)
        _sync(device)
        return n / (time.perf_counter() - t)

    t = time.perf_counter()
    run_fast()  # warm-up (compiling, with --compile)
    warm = time.perf_counter() - t
    run_plain()
    f, p = [], []
    for _ in range(args.rounds):
        f.append(run_fast())
        p.append(run_plain())
    return (
        statistics.median(f),
        statistics.median(p),
        f"{mode.precision}, {'channels-last' if mode.channels_last else 'NCHW'}, {runner.outcome}, first round "
        f"{warm:.0f} s",
    )


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="the fast side through torch.compile")
    parser.add_argument(
        "--channels-last",
        default="auto",
        choices=["auto", "yes", "no"],
        help="the fast side's layout (default: as train chooses)",
    )
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="the fast side's precision (default: as train chooses)"
    )
    parser.add_argument("--models", default="baseline,tanhconv")
    parser.add_argument("--trainings", default="natural,fgsm")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(
        f"torch {torch.__version__}, {describe_device(device)}, {torch.get_num_threads()} threads, cnn9 width "
        f"{args.width:g}, batch {args.batch}"
    )
    seconds = {}
    for training in args.trainings.split(","):
        for name in args.models.split(","):
            fast, plain, mode = measure(name, training, args, device)
            seconds[(name, training)] = 1 / fast
            print(
                f"{name:9s} {training:8s} default ({mode}) {fast:7.0f} img/s | plain fp32 NCHW {plain:7.0f} img/s | "
                f"ratio {fast / plain:.2f} (goal >= 2.5)",
                flush=True,
            )
    for training in [t for t in args.trainings.split(",") if ("tanhconv", t) in seconds and ("baseline", t) in seconds]:
        ratio = seconds[("tanhconv", training)] / seconds[("baseline", training)]
        print(f"{training}: tanhconv time / baseline time in the default mode {ratio:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
