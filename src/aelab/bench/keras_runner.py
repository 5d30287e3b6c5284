"""The seeds' own Keras models, timed the way aelab times itself.

This file imports only numpy and keras/tensorflow (never aelab or torch), so it
runs under any interpreter that has TensorFlow: ``python keras_runner.py
SPEC.json`` prints one JSON line. The parent writes the data as .npy files
(float32 in [0, 1], samples flattened) so both sides see the same arrays.

A spec: {"model": "dense" | "conv", "units": [784], "activation": "relu",
"output_activation": "sigmoid", "loss": "bce" | "mse", "batch_size": 128,
"epochs": 5, "seed": 0, "x_train": PATH, "x_test": PATH, "image_shape": [28, 28, 1]}.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter off stderr


def build(spec: dict):
    import keras
    from keras import layers

    d = int(spec["input_dim"])
    if spec["model"] == "conv":
        h, w, c = spec["image_shape"]
        inp = keras.Input(shape=(h, w, c))
        x = inp
        for f in (16, 8, 8):  # seed 004: conv + pool three times to a 4x4x8 code
            x = layers.Conv2D(f, 3, activation="relu", padding="same")(x)
            x = layers.MaxPooling2D(2, padding="same")(x)
        x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
        x = layers.UpSampling2D(2)(x)
        x = layers.Conv2D(8, 3, activation="relu", padding="same")(x)
        x = layers.UpSampling2D(2)(x)
        x = layers.Conv2D(16, 3, activation="relu")(x)  # 'valid': 16x16 -> 14x14, as the seed
        x = layers.UpSampling2D(2)(x)
        out = layers.Conv2D(c, 3, activation="sigmoid", padding="same")(x)
    else:
        inp = keras.Input(shape=(d,))
        x = inp
        for u in spec["units"]:
            x = layers.Dense(u, activation=spec["activation"])(x)
        out = layers.Dense(d, activation=spec["output_activation"])(x)
    model = keras.Model(inp, out)
    loss = "binary_crossentropy" if spec["loss"] == "bce" else "mean_squared_error"
    model.compile(optimizer="adam", loss=loss)
    return model


def main(path: str) -> dict:
    import numpy as np

    spec = json.loads(open(path).read())
    import keras

    keras.utils.set_random_seed(int(spec.get("seed", 0)))
    x = np.load(spec["x_train"])
    xt = np.load(spec["x_test"])
    spec["input_dim"] = x.shape[1]
    if spec["model"] == "conv":
        x = x.reshape(len(x), *spec["image_shape"])
        xt = xt.reshape(len(xt), *spec["image_shape"])
    model = build(spec)

    seconds: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.t0)

    # no validation_data: validation would land inside the epoch's time; it is computed once below
    model.fit(
        x,
        x,
        epochs=int(spec["epochs"]),
        batch_size=int(spec["batch_size"]),
        shuffle=True,
        verbose=0,
        callbacks=[Clock()],
    )
    p = model.predict(xt, batch_size=1024, verbose=0).reshape(len(xt), -1).astype(np.float64)
    t = xt.reshape(len(xt), -1).astype(np.float64)
    if spec["loss"] == "bce":
        q = np.clip(p, 1e-7, 1 - 1e-7)
        val = float(np.mean(-(t * np.log(q) + (1 - t) * np.log(1 - q))))
    else:
        val = float(np.mean((p - t) ** 2))
    import tensorflow as tf

    return {
        "impl": "keras",
        "versions": f"keras {keras.__version__}, tensorflow {tf.__version__}",
        "epoch_seconds": seconds,
        "val_loss": val,
        "parameters": int(model.count_params()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
