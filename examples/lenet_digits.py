"""A LeNet-style convolutional network on scikit-learn's 8x8 digits.

conv 3x3 (16) -> relu -> maxpool 2 -> conv 3x3 (32) -> relu -> maxpool 2
-> flatten -> dense 64 -> relu -> dropout -> dense 10, on NCHW images.

What it shows: `nn.Conv2d` (conv_general_dilated), `nn.MaxPool2d`
(reduce_window, differentiated through select_and_scatter_add), `nn.Dropout`
with explicit PRNG keys (a fresh key per step, split inside the jitted step),
`nn.inference_mode` for evaluation, and AdamW. Reaches >= 97% test accuracy.

    python examples/lenet_digits.py            # full run (asserts >= 97%)
    python examples/lenet_digits.py --quick    # a few epochs (smoke test)
    TRACEGRAD_EXAMPLES_QUICK=1 python examples/lenet_digits.py
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import tracegrad as tg
from tracegrad import nn, optim, random

try:
    from tqdm import tqdm
except ImportError:  # progress bar is optional: fall back to plain prints
    tqdm = None


def load_digits_images(seed=0, test_fraction=0.25):
    """(N, 1, 8, 8) float32 images in [0, 1], stratified train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int32)
    return train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)


def make_lenet(key, dropout=0.25):
    k = random.split(key, 4)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding="SAME", key=k[0]), nn.relu, nn.MaxPool2d(2),   # 16x4x4
        nn.Conv2d(16, 32, 3, padding="SAME", key=k[1]), nn.relu, nn.MaxPool2d(2),  # 32x2x2
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 64, key=k[2]), nn.relu,
        nn.Dropout(dropout),
        nn.Linear(64, 10, key=k[3]),
    )


def loss_fn(model, x, y, key):
    return nn.softmax_cross_entropy(model(x, key=key), y)


def make_train_step(opt):
    @tg.jit
    def train_step(model, opt_state, x, y, key):
        key, sub = random.split(key)  # a new dropout key every step
        loss, grads = tg.value_and_grad(loss_fn)(model, x, y, sub)
        updates, opt_state = opt.update(grads, opt_state, model)
        return optim.apply_updates(model, updates), opt_state, key, loss
    return train_step


@tg.jit
def predict(model, x):
    return model(x)


def batches(n, batch_size, rng):
    perm = rng.permutation(n)
    for i in range(n // batch_size):
        yield perm[i * batch_size:(i + 1) * batch_size]


def main(quick=False, epochs=None, batch_size=64, lr=3e-3, seed=0, verbose=True):
    epochs = epochs or (2 if quick else 30)
    x_train, x_test, y_train, y_test = load_digits_images(seed)
    if quick:  # the smoke test: a subset is enough to see the loss fall
        x_train, y_train = x_train[:512], y_train[:512]
    model = make_lenet(random.key(seed))
    opt = optim.adamw(lr, weight_decay=1e-4)
    opt_state = opt.init(model)
    train_step = make_train_step(opt)
    key = random.key(seed + 1)
    rng = np.random.default_rng(seed)
    if verbose:
        print(f"digits: {len(x_train)} train / {len(x_test)} test images of shape "
              f"{x_train.shape[1:]}, {nn.count_params(model)} parameters")
        print(model)

    losses = []
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc="lenet", disable=not verbose) if tqdm else range(epochs)
    for epoch in bar:
        total, count = 0.0, 0
        for idx in batches(len(x_train), batch_size, rng):
            model, opt_state, key, loss = train_step(model, opt_state, x_train[idx],
                                                     y_train[idx], key)
            total, count = total + float(loss), count + 1
        losses.append(total / count)
        if tqdm is not None and verbose:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        elif verbose and (epoch % 5 == 0 or epoch == epochs - 1):
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {losses[-1]:.4f}")
    train_time = time.perf_counter() - t0

    eval_model = nn.inference_mode(model)  # dropout off
    test_acc = float(nn.accuracy(predict(eval_model, x_test), y_test))
    train_acc = float(nn.accuracy(predict(eval_model, x_train), y_train))
    if verbose:
        steps = epochs * (len(x_train) // batch_size)
        print(f"{steps} steps in {train_time:.2f} s ({steps / train_time:.0f} steps/s, "
              f"incl. compile); loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        print(f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")
    return {"losses": losses, "train_accuracy": train_acc, "test_accuracy": test_acc,
            "model": model}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few epochs only (smoke test)")
    ap.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args()
    quick = args.quick or bool(os.environ.get("TRACEGRAD_EXAMPLES_QUICK"))
    result = main(quick=quick, epochs=args.epochs)
    if not quick and result["test_accuracy"] < 0.97:
        raise SystemExit(f"test accuracy {result['test_accuracy']:.4f} is below 0.97")
