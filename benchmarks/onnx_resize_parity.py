"""Could the model-input resize run inside ONNX Runtime? Parity and speed against Pillow.

Usage:
    python benchmarks/onnx_resize_parity.py [--data ../shared/data/chest_xray] [--images 300]

pneumoscan resizes every decoded X-ray to the model's input size with Pillow's antialiased
bilinear filter (`preprocessing.resize`), and the shipped model was trained on exactly those
pixels. ONNX's `Resize` (opset 18, ``mode="linear"``, ``antialias=1``) is the graph
equivalent. This script builds that one-node graph in memory, runs it with ONNX Runtime on
real training X-rays (uint8 in, uint8 out) and prints how far its pixels are from Pillow's
and what each costs per image. Needs the ``export`` extra (the ``onnx`` package).
"""

from __future__ import annotations

import argparse
import timeit
from functools import partial
from pathlib import Path

import numpy as np


def resize_session(size: int) -> object:
    """An ONNX Runtime session of one antialiased linear Resize to ``(size, size)``, uint8."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 1, None, None])
    resized = helper.make_tensor_value_info("resized", TensorProto.UINT8, [1, 1, size, size])
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, size, size])
    node = helper.make_node("Resize", ["image", "", "", "sizes"], ["resized"], mode="linear",
                            antialias=1, coordinate_transformation_mode="half_pixel")
    graph = helper.make_graph([node], "resize", [image], [resized], initializer=[sizes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              ir_version=9)  # the newest IR onnxruntime 1.31 reads
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/chest_xray"))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=160, help="model input side, pixels")
    args = parser.parse_args()

    from pneumoscan.fitting.export import sample_images
    from pneumoscan.imaging import decode_image
    from pneumoscan.preprocessing import resize

    files = sample_images(args.data, args.images)
    if not files:
        raise SystemExit(f"no images under {args.data}; see ../shared/data/README.md")
    session = resize_session(args.size)

    def onnx_resize(pixels: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": pixels[None, None]})[0][0, 0]  # type: ignore[attr-defined]

    def pillow_resize(pixels: np.ndarray) -> np.ndarray:
        return resize(pixels, args.size)

    differences = []
    for path in files:
        pixels = decode_image(path).pixels
        differences.append(np.abs(pillow_resize(pixels).astype(np.int16)
                                  - onnx_resize(pixels).astype(np.int16)))
    stacked = np.stack(differences)
    identical = sum(int(not d.any()) for d in differences)
    pixels = decode_image(files[0]).pixels
    calls = {"Pillow": pillow_resize, "ONNX Runtime": onnx_resize}
    seconds = {name: min(timeit.repeat(partial(call, pixels), number=300, repeat=3)) / 300
               for name, call in calls.items()}
    print(f"{len(files)} X-rays of {pixels.shape[1]}x{pixels.shape[0]} px -> "
          f"{args.size}x{args.size}, uint8\n")
    print("| measure | value |\n|---|---:|")
    print(f"| images with identical pixels | {identical} / {len(files)} |")
    print(f"| mean abs difference, grey levels | {stacked.mean():.3f} |")
    print(f"| max abs difference, grey levels | {int(stacked.max())} |")
    print(f"| pixels that differ | {np.mean(stacked > 0):.2%} |")
    for name, value in seconds.items():
        print(f"| {name} resize, µs per image (tight loop) | {value * 1e6:.0f} |")


if __name__ == "__main__":
    main()
