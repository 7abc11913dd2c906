"""See inside a network: gradient checks, activation statistics, receptive fields, pictures.

``gradcheck`` / ``gradcheck_model`` compare backprop with finite differences;
``activation_stats`` and ``UpdateRatioTracker`` judge hidden units and updates;
``gradient_flow`` follows the gradient back through the layers (vanishing, exploding, blocked);
``receptive_fields`` / ``effective_receptive_field`` measure what a unit sees;
``summarize`` prints the layer table; ``build_report`` writes the HTML report;
``ember.diagnostics.visualize`` draws the pictures (matplotlib, imported lazily).
"""
from ember.diagnostics.gradcheck import gradcheck, GradcheckReport
from ember.diagnostics.model_check import gradcheck_model
from ember.diagnostics.activations import ActivationReport, LayerStats, UpdateRatioTracker, activation_stats
from ember.diagnostics.gradient_flow import GradientReport, GradStats, gradient_flow
from ember.diagnostics.receptive_field import ERF, Field, effective_receptive_field, receptive_fields
from ember.diagnostics.summary import ModelSummary, summarize
from ember.diagnostics.report import build_report

try:  # written by the conv engineer; optional until it lands
    from ember.diagnostics.conv_matrix import conv_matrix, conv_to_linear
except ImportError:  # pragma: no cover - depends on another file's presence
    pass
