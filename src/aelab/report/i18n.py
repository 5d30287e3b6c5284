"""UI strings in English and Japanese: the explorer's now, the run report's when it adopts them.

Japanese terms follow the seeds: 自己符号化器 / オートエンコーダ, 中間層 (the code layer),
再構成 (reconstruction). ``{name}`` placeholders are filled in by the page.
"""
from __future__ import annotations

LANGUAGES = ("en", "ja")

STRINGS: dict[str, dict[str, str]] = {
    "title": {"en": "aelab explorer", "ja": "aelab エクスプローラ"},
    "subtitle": {"en": "The trained autoencoder runs in this page: draw, slide the code, compare.",
                 "ja": "学習済みのオートエンコーダ（自己符号化器）がこのページの中で動きます。描く・中間層を動かす・比べる。"},
    "lang": {"en": "日本語", "ja": "English"},
    "draw": {"en": "Draw and see", "ja": "描いて見る"},
    "draw_help": {"en": "Draw with the mouse or a finger; the reconstruction and the code follow as you draw. "
                        "Or pick a test image below.",
                  "ja": "マウスか指で描くと、描いている間に再構成と中間層の値が変わります。下のテスト画像から選ぶこともできます。"},
    "input": {"en": "input", "ja": "入力"},
    "model_input": {"en": "what the model sees", "ja": "モデルへの入力"},
    "reconstruction": {"en": "reconstruction", "ja": "再構成"},
    "brush": {"en": "brush", "ja": "ブラシ"},
    "erase": {"en": "eraser", "ja": "消しゴム"},
    "clear": {"en": "clear", "ja": "消去"},
    "colour": {"en": "colour", "ja": "色"},
    "test_images": {"en": "test images", "ja": "テスト画像"},
    "noise": {"en": "noise", "ja": "ノイズ"},
    "noise_help": {"en": "The run was trained on {kind} noise of {amount}; the model sees the noisy input.",
                   "ja": "この実験は {kind} ノイズ（{amount}）で学習しました。モデルにはノイズを加えた入力が入ります。"},
    "new_noise": {"en": "new noise", "ja": "ノイズを引き直す"},
    "code": {"en": "code", "ja": "中間層"},
    "code_dense_help": {"en": "{n} values. Drag a bar (or a slider) to change a value; the decoded image follows.",
                        "ja": "{n} 個の値。棒（またはスライダー）をドラッグすると値が変わり、復元画像が追従します。"},
    "code_conv_help": {"en": "{c} maps of {h}x{w}. Click a cell to pick a channel and position, then move the slider.",
                       "ja": "{h}x{w} のマップが {c} 枚。セルをクリックしてチャネルと位置を選び、スライダーを動かします。"},
    "selected": {"en": "value", "ja": "値"},
    "channel": {"en": "channel", "ja": "チャネル"},
    "position": {"en": "position", "ja": "位置"},
    "reset": {"en": "reset to the encoded code", "ja": "エンコードした値に戻す"},
    "score": {"en": "anomaly score ({metric})", "ja": "異常スコア（{metric}）"},
    "threshold": {"en": "threshold {t} ({src})", "ja": "しきい値 {t}（{src}）"},
    "no_threshold": {"en": "no threshold (`aelab score {run}` sets one)",
                     "ja": "しきい値なし（`aelab score {run}` で決まります）"},
    "outlier": {"en": "above the threshold: unusual", "ja": "しきい値超え：異常"},
    "inlier": {"en": "below the threshold: usual", "ja": "しきい値以下：正常"},
    "map": {"en": "The map of codes", "ja": "中間層の地図"},
    "map_help": {"en": "Test images' codes in 2-D, coloured by class. Hover a point to see the image and its "
                       "reconstruction; click two points to decode the path between their codes. On the PCA map, "
                       "the cross is the current input's code.",
                 "ja": "テスト画像の中間層の値を 2 次元に写し、クラスで色分けしました。点に触れると画像と再構成、"
                       "2 点をクリックするとその間の中間層を復元した列が出ます。PCA の地図の十字は今の入力の中間層です。"},
    "path": {"en": "decoded path", "ja": "補間の復元"},
    "pick_first": {"en": "click two points on the map to decode the path between them",
                   "ja": "地図の 2 点をクリックすると、その間の中間層を復元した列が出ます"},
    "pick_two": {"en": "click a second point", "ja": "もう 1 点クリック"},
    "vae": {"en": "VAE: the latent space", "ja": "VAE：潜在空間"},
    "grid": {"en": "latent grid", "ja": "潜在空間のグリッド"},
    "grid_help": {"en": "Decoded codes on a grid over dimensions {i} and {j} (-3 to 3); the others stay at the current code.",
                  "ja": "次元 {i} と {j} を -3 から 3 まで動かして復元（他の次元は今の値のまま）。"},
    "traversals": {"en": "per-dimension traversals", "ja": "次元ごとの変化"},
    "traversal_help": {"en": "Each row moves one dimension from -3 to 3 around the current code.",
                       "ja": "各行で 1 つの次元を今の値のまわりに -3 から 3 まで動かします。"},
    "weights": {"en": "First-layer weights", "ja": "1 層目の重み"},
    "weights_help": {"en": "{n} units of the first layer, drawn as images (blue negative, red positive). "
                           "Click one to see the test images that excite it most.",
                     "ja": "1 層目の {n} ユニットの重みを画像として描きました（青が負、赤が正）。クリックすると最も強く反応するテスト画像が出ます。"},
    "top_images": {"en": "test images that excite unit {u} most", "ja": "ユニット {u} が最も強く反応するテスト画像"},
    "unsupported": {"en": "This run cannot run in the page: {reason}", "ja": "この実験はページ内では動かせません：{reason}"},
    "timing": {"en": "encode + decode: {ms} ms", "ja": "エンコード＋デコード：{ms} ms"},
    "test_metrics": {"en": "test", "ja": "テスト"},
    "class": {"en": "class", "ja": "クラス"},
    "hover": {"en": "hover a point", "ja": "点に触れてください"},
    "footer": {"en": "Written by `aelab explore`. Everything runs in this file: no network, no server.",
               "ja": "`aelab explore` が書き出しました。すべてこのファイルの中で動きます（通信もサーバーも不要）。"},
}


def table() -> dict[str, dict[str, str]]:
    """{language: {key: text}}, the shape the page's script reads."""
    return {lang: {k: v[lang] for k, v in STRINGS.items()} for lang in LANGUAGES}
