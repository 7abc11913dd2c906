"""(being written)"""
from ember.diagnostics.gradcheck import gradcheck, GradcheckReport
