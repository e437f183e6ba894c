"""Images and stereo data: reading and writing, dataset layouts, patches, degradation, matching.

| module | what it holds |
| --- | --- |
| ``io`` | reading and writing images (atomically), images <-> tensors |
| ``layouts`` | stereo layouts (side by side, top-bottom, half size) split and joined; red-cyan anaglyph |
| ``containers`` | stereo photo files: MPO (Disparity frames), JPS (``_JPSJPS_`` block), spatial HEIC (``ster`` group) |
| ``media`` | one reader and one writer for every stereo input and output (two files, layouts, containers) |
| ``datasets`` | readers for the real dataset layouts (Middlebury, KITTI, Flickr1024, ...) |
| ``patches`` | the training patch file (safetensors) and its extraction |
| ``resize`` | MATLAB-exact bicubic ``imresize`` |
| ``synthetic`` | synthetic stereo pairs from single images |
| ``hints`` | disparity hints for training (SGBM on the HR pair) |
| ``disparity`` | stereo matching (SGBM), PFM files, LR blocks |
"""
