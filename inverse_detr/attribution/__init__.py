"""Attribution of one detection's class score and box to the input image, for any `Detector`.

One detection is one candidate of the detector (a DETR query, a RetinaNet anchor, an FCOS point,
an R-CNN anchor's box as a fixed RoI, see `select.find_candidate`) and a category. Its outputs
are the candidate's log score for the category (`Detector.candidate_log_score`) and its box
(`Detector.candidate_box`, four coordinates). Two methods give an (H, W) map per output:

- `gradcam.gradcam_maps`: Grad-CAM (pytorch-grad-cam) on a chosen feature layer;
- `occlusion.occlusion_maps`: captum's `Occlusion`, sliding a patch of the image's mean colour.

Both can be restricted to the detection's box (zero outside, as the layout-inversion paper
shows them). `metrics` scores a map against an object's mask (boundary band vs interior, and the
overlap of the class and box maps); `plots` draws image | class map | box map. Pure functions:
no Lightning, no files.
"""
