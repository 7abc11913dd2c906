"""Rows of the op table (see tests/opdb.py): convolutions, unfold/fold and padding modes.

Inputs are small (gradcheck in float64 takes two forwards per element); the samples
cover stride, dilation, groups (depthwise included), zero/"same"/"valid" padding,
odd sizes, non-square kernels, batch 1, unbatched inputs, no bias and non-contiguous views.
PyTorch is the oracle.
"""
import torch.nn.functional as TF

import ember.nn.functional as F
from tests.opdb import OpInfo, Sample, non_contiguous


def _conv2d_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 3, 5, 6)), r((4, 3, 3, 3)), r(4)), name="basic"),
        Sample((r((1, 2, 7, 5)), r((3, 2, 2, 3)), r(3)), {"stride": (2, 1), "padding": (1, 2)},
               name="strided_nonsquare"),
        Sample((r((2, 2, 7, 7)), r((2, 2, 3, 2)), r(2)), {"dilation": (2, 3), "padding": 1}, name="dilated"),
        Sample((r((2, 4, 5, 5)), r((6, 2, 3, 3)), r(6)), {"groups": 2, "stride": 2, "padding": 1}, name="grouped"),
        Sample((r((2, 3, 6, 5)), r((6, 1, 3, 3)), r(6)), {"groups": 3, "padding": 1}, name="depthwise_x2"),
        Sample((r((1, 2, 6, 6)), r((3, 2, 2, 2)), r(3)), {"padding": "same", "dilation": 2},
               name="same_even_kernel"),
        Sample((r((1, 2, 5, 4)), r((2, 2, 3, 3)), r(2)), {"padding": "valid"}, name="valid"),
        Sample((r((2, 1, 3, 3)), r((2, 1, 3, 3)), r(2)), name="input_equals_kernel"),
        Sample((r((1, 2, 4, 9)), r((2, 2, 1, 4)), r(2)), {"stride": 3, "padding": (0, 2)},
               name="stride_gt_kernel_rows"),
        Sample((r((2, 5, 5)), r((3, 2, 3, 3)), r(3)), {"padding": 1}, name="unbatched"),
        Sample((non_contiguous(r((1, 2, 5, 5))), r((2, 2, 3, 3)), r(2)), {"padding": 1}, name="noncontig"),
        Sample((r((2, 3, 4, 4)), r((2, 3, 3, 3))), {"padding": 4, "stride": 2}, name="no_bias_big_pad"),
    ]


def _conv1d_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 3, 9)), r((4, 3, 3)), r(4)), {"stride": 2, "padding": 1}, name="strided"),
        Sample((r((1, 4, 8)), r((4, 2, 4)), r(4)), {"groups": 2, "dilation": 2, "padding": "same"},
               name="grouped_same"),
        Sample((r((3, 7)), r((2, 3, 2))), name="unbatched_nobias"),
    ]


def _conv_t_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 3, 3, 4)), r((3, 2, 3, 3)), r(2)), {"stride": 2, "padding": 1, "output_padding": 1}, name="s2"),
        Sample((r((1, 4, 3, 3)), r((4, 1, 2, 3)), r(2)), {"groups": 2, "dilation": (2, 1)}, name="grouped_dilated"),
        Sample((r((1, 2, 4, 3)), r((2, 3, 3, 2))), {"stride": (1, 3), "padding": (1, 0), "output_padding": (0, 2)},
               name="nonsquare_nobias"),
    ]


def _unfold_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 3, 5, 6)),), {"kernel_size": (2, 3)}, name="basic"),
        Sample((r((1, 2, 7, 6)),), {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": (1, 2)}, name="all"),
    ]


def _fold_samples(rng):
    r = rng.standard_normal
    return [
        Sample((r((2, 3 * 6, 8)),), {"output_size": (4, 6), "kernel_size": (2, 3), "stride": (2, 1)}, name="basic"),
        Sample((r((1, 2 * 9, 16)),), {"output_size": (7, 7), "kernel_size": 3, "stride": 2, "padding": 1}, name="pad"),
    ]


def _pad_samples(mode):
    def samples(rng):
        r = rng.standard_normal
        return [
            Sample((r((2, 3, 5, 6)),), {"pad": (2, 1, 1, 3), "mode": mode}, name="2d"),
            Sample((r((2, 3, 4)),), {"pad": (3, 0), "mode": mode}, name="1d_one_side"),
            Sample((r((1, 2, 3, 3, 4)),), {"pad": (1, 1, 2, 0, 1, 2), "mode": mode}, name="3d"),
            Sample((non_contiguous(r((1, 2, 4, 4))),), {"pad": (1, 2, 2, 1), "mode": mode}, name="noncontig"),
        ]
    return samples


OPS: list = [
    OpInfo("conv2d", F.conv2d, _conv2d_samples, torch_fn=TF.conv2d),
    OpInfo("conv1d", F.conv1d, _conv1d_samples, torch_fn=TF.conv1d),
    OpInfo("conv_transpose2d", F.conv_transpose2d, _conv_t_samples, torch_fn=TF.conv_transpose2d),
    OpInfo("unfold", F.unfold, _unfold_samples, torch_fn=TF.unfold),
    OpInfo("fold", F.fold, _fold_samples, torch_fn=TF.fold),
] + [
    OpInfo(f"pad_{mode}", F.pad, _pad_samples(mode), torch_fn=TF.pad) for mode in ("reflect", "replicate", "circular")
]
