"""See inside a network: gradient checks, activation statistics, receptive fields, pictures.

``gradcheck`` / ``gradcheck_model`` compare backprop with finite differences;
``activation_stats`` and ``UpdateRatioTracker`` judge hidden units and updates;
``gradient_flow`` follows the gradient back through the layers (vanishing, exploding, blocked);
``receptive_fields`` / ``effective_receptive_field`` measure what a unit sees;
``saliency``, ``smoothgrad``, ``integrated_gradients``, ``occlusion`` attribute a class score to input pixels;
``interpolate`` / ``loss_surface`` trace the loss along a line and over a plane in weight space;
``summarize`` prints the layer table; ``build_report`` writes the HTML report;
``lr_find`` runs the learning-rate range test (Smith 2017) and suggests a learning rate;
``conv_matrix`` / ``conv_to_linear`` show a conv layer as its Toeplitz-structured matrix;
``maximize_activation`` / ``class_model`` / ``dataset_examples`` show what a unit wants to see, ``guided_backprop``
  (Springenberg 2015) which pixels it responds to;
``ember.diagnostics.visualize`` draws the pictures (matplotlib, imported lazily).
"""
from ember.diagnostics.gradcheck import gradcheck, GradcheckReport
from ember.diagnostics.model_check import gradcheck_model
from ember.diagnostics.activations import ActivationReport, LayerStats, UpdateRatioTracker, activation_stats
from ember.diagnostics.gradient_flow import GradientReport, GradStats, gradient_flow
from ember.diagnostics.receptive_field import ERF, Field, effective_receptive_field, receptive_fields
from ember.diagnostics.attribution import (Attribution, integrated_gradients, occlusion, plot_attributions,
                                          saliency, smoothgrad)
from ember.diagnostics.landscape import LossLandscape, interpolate, loss_surface, random_directions
from ember.diagnostics.summary import ModelSummary, summarize
from ember.diagnostics.report import build_report
from ember.diagnostics.lr_finder import LRFindResult, lr_find
from ember.diagnostics.conv_matrix import conv_matrix, conv_to_linear
from ember.diagnostics.feature_viz import (FeatureVisualization, TopExamples, class_model, dataset_examples,
                                          guided_backprop, maximize_activation)

__all__ = [
    "gradcheck", "GradcheckReport", "gradcheck_model", "ActivationReport", "LayerStats", "UpdateRatioTracker",
    "activation_stats", "GradientReport", "GradStats", "gradient_flow", "ERF", "Field", "effective_receptive_field",
    "receptive_fields", "Attribution", "integrated_gradients", "occlusion", "plot_attributions", "saliency",
    "smoothgrad", "LossLandscape", "interpolate", "loss_surface", "random_directions", "ModelSummary", "summarize",
    "build_report", "LRFindResult", "lr_find", "conv_matrix", "conv_to_linear",
    "FeatureVisualization", "TopExamples", "maximize_activation", "class_model", "dataset_examples", "guided_backprop",
]
