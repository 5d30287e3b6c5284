"""UI strings in English and Japanese: the explorer's (STRINGS) and the run report's (REPORT).

Japanese terms follow the seeds: 自己符号化器 / オートエンコーダ, 中間層 (the code layer),
再構成 (reconstruction). ``{name}`` placeholders are filled in by the page.
"""

from __future__ import annotations

LANGUAGES = ("en", "ja")

STRINGS: dict[str, dict[str, str]] = {
    "title": {"en": "aelab explorer", "ja": "aelab エクスプローラ"},
    "subtitle": {
        "en": "The trained autoencoder runs in this page: draw, slide the code, compare.",
        "ja": "学習済みのオートエンコーダ（自己符号化器）がこのページの中で動きます。描く・中間層を動かす・比べる。",
    },
    "lang": {"en": "日本語", "ja": "English"},
    "draw": {"en": "Draw and see", "ja": "描いて見る"},
    "draw_help": {
        "en": "Draw with the mouse or a finger; the reconstruction and the code follow as you draw. "
        "Or pick a test image below.",
        "ja": "マウスか指で描くと、描いている間に再構成と中間層の値が変わります。下のテスト画像から選ぶこともできます。",
    },
    "input": {"en": "input", "ja": "入力"},
    "model_input": {"en": "what the model sees", "ja": "モデルへの入力"},
    "reconstruction": {"en": "reconstruction", "ja": "再構成"},
    "brush": {"en": "brush", "ja": "ブラシ"},
    "erase": {"en": "eraser", "ja": "消しゴム"},
    "clear": {"en": "clear", "ja": "消去"},
    "colour": {"en": "colour", "ja": "色"},
    "test_images": {"en": "test images", "ja": "テスト画像"},
    "noise": {"en": "noise", "ja": "ノイズ"},
    "noise_help": {
        "en": "The run was trained on {kind} noise of {amount}; the model sees the noisy input.",
        "ja": "この実験は {kind} ノイズ（{amount}）で学習しました。モデルにはノイズを加えた入力が入ります。",
    },
    "new_noise": {"en": "new noise", "ja": "ノイズを引き直す"},
    "code": {"en": "code", "ja": "中間層"},
    "code_dense_help": {
        "en": "{n} values. Drag a bar (or a slider) to change a value; the decoded image follows.",
        "ja": "{n} 個の値。棒（またはスライダー）をドラッグすると値が変わり、復元画像が追従します。",
    },
    "code_conv_help": {
        "en": "{c} maps of {h}x{w}. Click a cell to pick a channel and position, then move the slider.",
        "ja": "{h}x{w} のマップが {c} 枚。セルをクリックしてチャネルと位置を選び、スライダーを動かします。",
    },
    "selected": {"en": "value", "ja": "値"},
    "channel": {"en": "channel", "ja": "チャネル"},
    "position": {"en": "position", "ja": "位置"},
    "reset": {"en": "reset to the encoded code", "ja": "エンコードした値に戻す"},
    "score": {"en": "anomaly score ({metric})", "ja": "異常スコア（{metric}）"},
    "threshold": {"en": "threshold {t} ({src})", "ja": "しきい値 {t}（{src}）"},
    "no_threshold": {
        "en": "no threshold (`aelab score {run}` sets one)",
        "ja": "しきい値なし（`aelab score {run}` で決まります）",
    },
    "outlier": {"en": "above the threshold: unusual", "ja": "しきい値超え：異常"},
    "inlier": {"en": "below the threshold: usual", "ja": "しきい値以下：正常"},
    "map": {"en": "The map of codes", "ja": "中間層の地図"},
    "map_help": {
        "en": "Test images' codes in 2-D, coloured by class. Hover a point to see the image and its "
        "reconstruction; click two points to decode the path between their codes. On the PCA map, "
        "the cross is the current input's code.",
        "ja": "テスト画像の中間層の値を 2 次元に写し、クラスで色分けしました。点に触れると画像と再構成、"
        "2 点をクリックするとその間の中間層を復元した列が出ます。PCA の地図の十字は今の入力の中間層です。",
    },
    "path": {"en": "decoded path", "ja": "補間の復元"},
    "pick_first": {
        "en": "click two points on the map to decode the path between them",
        "ja": "地図の 2 点をクリックすると、その間の中間層を復元した列が出ます",
    },
    "pick_two": {"en": "click a second point", "ja": "もう 1 点クリック"},
    "vae": {"en": "VAE: the latent space", "ja": "VAE：潜在空間"},
    "grid": {"en": "latent grid", "ja": "潜在空間のグリッド"},
    "grid_help": {
        "en": "Decoded codes on a grid over dimensions {i} and {j} (-3 to 3); the others stay at the current code.",
        "ja": "次元 {i} と {j} を -3 から 3 まで動かして復元（他の次元は今の値のまま）。",
    },
    "traversals": {"en": "per-dimension traversals", "ja": "次元ごとの変化"},
    "traversal_help": {
        "en": "Each row moves one dimension from -3 to 3 around the current code.",
        "ja": "各行で 1 つの次元を今の値のまわりに -3 から 3 まで動かします。",
    },
    "weights": {"en": "First-layer weights", "ja": "1 層目の重み"},
    "weights_help": {
        "en": "{n} units of the first layer, drawn as images (blue negative, red positive). "
        "Click one to see the test images that excite it most.",
        "ja": "1 層目の {n} ユニットの重みを画像として描きました（青が負、赤が正）。クリックすると最も強く反応するテスト画像が出ます。",
    },
    "top_images": {"en": "test images that excite unit {u} most", "ja": "ユニット {u} が最も強く反応するテスト画像"},
    "unsupported": {
        "en": "This run cannot run in the page: {reason}",
        "ja": "この実験はページ内では動かせません：{reason}",
    },
    "timing": {"en": "encode + decode: {ms} ms", "ja": "エンコード＋デコード：{ms} ms"},
    "test_metrics": {"en": "test", "ja": "テスト"},
    "class": {"en": "class", "ja": "クラス"},
    "hover": {"en": "hover a point", "ja": "点に触れてください"},
    "footer": {
        "en": "Written by `aelab explore`. Everything runs in this file: no network, no server.",
        "ja": "`aelab explore` が書き出しました。すべてこのファイルの中で動きます（通信もサーバーも不要）。",
    },
}


def table() -> dict[str, dict[str, str]]:
    """{language: {key: text}}, the shape the page's script reads."""
    return {lang: {k: v[lang] for k, v in STRINGS.items()} for lang in LANGUAGES}


# The run report (report.html): its headings, cards, notes and the captions of the figures every run
# has. The families' own figure sets keep their English captions.
REPORT: dict[str, dict[str, str]] = {
    "lang": {"en": "日本語", "ja": "English"},
    "run_line": {"en": "run {path} · report written {written}", "ja": "実験 {path} ・ レポート作成 {written}"},
    "bce_floor_note": {
        "en": "BCE cannot reach 0 on grey pixels: its minimum on these test images is their mean "
        "entropy, {floor} nats per pixel. This run is {above} above it.",
        "ja": "灰色の画素では BCE は 0 になりません。このテスト画像での最小値は平均エントロピーの "
        "1 画素あたり {floor} nats で、この実験はそれより {above} 上です。",
    },
    "published": {"en": "Published", "ja": "公表値"},
    "col_metric": {"en": "metric", "ja": "指標"},
    "col_published": {"en": "published", "ja": "公表値"},
    "col_this_run": {"en": "this run", "ja": "この実験"},
    "sec_Reconstructions": {"en": "Reconstructions", "ja": "再構成"},
    "sec_Training": {"en": "Training", "ja": "学習"},
    "sec_Weights": {"en": "Weights", "ja": "重み"},
    "sec_Codes": {"en": "Codes", "ja": "中間層"},
    "sec_Latent space": {"en": "Latent space", "ja": "潜在空間"},
    "sec_Model": {"en": "Model", "ja": "モデル"},
    "sec_Config": {"en": "Config", "ja": "設定"},
    "sec_Probe": {"en": "Probe", "ja": "線形プローブ"},
    "code_numbers": {"en": "the {n} numbers", "ja": "{n} 個の数値"},
    "col_layer": {"en": "Layer (type)", "ja": "層（種類）"},
    "col_shape": {"en": "Output shape", "ja": "出力の形"},
    "col_params": {"en": "Param #", "ja": "パラメータ数"},
    "total_params": {"en": "Total params: {n}", "ja": "パラメータ総数：{n}"},
    "rerun": {"en": "config.yaml (rerun with {cmd})", "ja": "config.yaml（{cmd} で再実行）"},
    "m_test_loss": {"en": "test loss", "ja": "テスト損失"},
    "m_test_bce": {"en": "test BCE", "ja": "テスト BCE"},
    "m_test_bce_floor": {"en": "BCE floor", "ja": "BCE の下限"},
    "m_test_bce_above_floor": {"en": "BCE above floor", "ja": "BCE の下限との差"},
    "m_test_mse": {"en": "test MSE", "ja": "テスト MSE"},
    "m_test_psnr": {"en": "test PSNR (dB)", "ja": "テスト PSNR (dB)"},
    "m_test_nelbo": {"en": "test -ELBO (nats)", "ja": "テスト -ELBO (nats)"},
    "m_test_nll": {"en": "test NLL (nats)", "ja": "テスト NLL (nats)"},
    "m_test_dead_units": {"en": "dead code units", "ja": "中間層の死んだユニット"},
    "m_test_active_units": {"en": "VAE active units", "ja": "VAE の活性ユニット"},
    "m_code_mean": {"en": "mean code activation", "ja": "中間層の平均活性"},
    "cap_reconstructions": {
        "en": "Top: test images (the first of each class); below: what the model gives back. "
        "Look at what is lost: texture, prints, thin strokes.",
        "ja": "上：テスト画像（各クラスの最初の 1 枚）、下：オートエンコーダ（自己符号化器）の再構成。"
        "失われたもの（質感、柄、細い線）に注目してください。",
    },
    "cap_reconstructions_noisy": {
        "en": "Clean test images, the noisy input the model was given (the training corruption), and its output.",
        "ja": "きれいなテスト画像、モデルに与えたノイズ入りの入力（学習時と同じ劣化）、その再構成。",
    },
    "cap_progress": {
        "en": "The same images after each of {epochs} epochs (animated; the last frame stays longer).",
        "ja": "同じ画像の各エポック後の再構成（{epochs} エポック、アニメーション。最後のコマは長めに表示）。",
    },
    "cap_progress_strip": {
        "en": "The same images after selected epochs, top to bottom: how the reconstructions sharpen.",
        "ja": "選んだエポック後の同じ画像（上から下へ）：再構成がくっきりしていく様子。",
    },
    "cap_best_worst": {
        "en": "The 8 test images reconstructed best and worst, with their per-pixel MSE (mean over "
        "the test set {mse}).",
        "ja": "再構成が最も良い 8 枚と最も悪い 8 枚のテスト画像と、その 1 画素あたりの MSE"
        "（テストセット全体の平均 {mse}）。",
    },
    "cap_learning_curves": {
        "en": "Left: mean train loss per epoch and validation loss after it. Right: every batch's loss, log scale.",
        "ja": "左：エポックごとの学習損失の平均と、その後の検証損失。右：全バッチの損失（対数目盛）。",
    },
    "cap_learning_curves_floor": {
        "en": "Left: mean train loss per epoch and validation loss after it. Right: every "
        "batch's loss, log scale. Dashed: the BCE floor {floor} of the validation "
        "images, which no model can go below.",
        "ja": "左：エポックごとの学習損失の平均と、その後の検証損失。右：全バッチの損失（対数目盛）。"
        "破線：検証画像の BCE の下限 {floor}（どのモデルもこれより下がりません）。",
    },
    "cap_code": {
        "en": "The code of one test image: {n} numbers, all the decoder gets (listed below the figure).",
        "ja": "テスト画像 1 枚の中間層：{n} 個の数値。デコーダが受け取るのはこれだけです（図の下に一覧）。",
    },
    "cap_code_maps": {
        "en": "That image's code as feature maps, one per channel, one shared colour scale.",
        "ja": "その画像の中間層を特徴マップとして（チャネルごとに 1 枚、色の目盛は共通）。",
    },
    "cap_code_mean": {
        "en": "Mean activation of each code unit over the test set, and overall; a sparsity penalty pushes it down.",
        "ja": "テストセットでの中間層の各ユニットの平均活性と全体の平均。スパース正則化はこれを下げます。",
    },
    "cap_latent": {
        "en": "Test codes in 2-D, coloured by label: classes the code tells apart form separate clusters.",
        "ja": "テスト画像の中間層を 2 次元に写し、ラベルで色分け。中間層が区別できるクラスは別々の塊になります。",
    },
}


def text(key: str, lang: str = "en", **args: object) -> str:
    """One report string with its ``{name}`` placeholders filled (what the page shows before any script runs)."""
    s = REPORT[key][lang]
    for k, v in args.items():
        s = s.replace("{" + k + "}", str(v))
    return s


def report_table() -> dict[str, dict[str, str]]:
    """{language: {key: text}} of the run report, embedded in report.html for its language switch."""
    return {lang: {k: v[lang] for k, v in REPORT.items()} for lang in LANGUAGES}
