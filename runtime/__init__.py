"""Device side: preprocessing, backends, postprocessing, rendering and the camera demo.

Imports only numpy and OpenCV at module level; each backend imports its own framework.
"""
