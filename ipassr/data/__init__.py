"""Images and stereo data: reading and writing, dataset layouts, patches, degradation, matching.

| module | what it holds |
| --- | --- |
| ``io`` | reading and writing images as stored (grey, 16-bit, alpha) or as RGB uint8, atomically; float views |
| ``layouts`` | stereo layouts (side by side, top-bottom, half size) split and joined; red-cyan anaglyph |
| ``containers`` | stereo photo files: MPO (Disparity frames), JPS (``_JPSJPS_`` block), spatial HEIC (``ster`` group) |
| ``media`` | one reader and one writer for every stereo input and output (two files, layouts, containers) |
| ``video`` | reading 3D video (PyAV): checks before computing, the layout its container names, frames |
| ``video_encode`` | writing 3D video: segments encoded atomically, joined with the audio, layout tags |
| ``mp4_boxes`` | the MP4 ``st3d`` box PyAV cannot write, and a check for a file cut short |
| ``datasets`` | readers for the real dataset layouts (Middlebury, KITTI, Flickr1024, ...) |
| ``patches`` | the training patch file (safetensors) and its extraction |
| ``resize`` | MATLAB-exact bicubic ``imresize`` |
| ``synthetic`` | synthetic stereo pairs from single images |
| ``hints`` | disparity hints for training (SGBM on the HR pair) |
| ``disparity`` | stereo matching (SGBM), PFM files, LR blocks |
"""
