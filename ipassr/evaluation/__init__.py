"""Scoring: the paper's evaluation protocol and the studies built on it.

| module | what it holds |
| --- | --- |
| ``metrics`` | PSNR and SSIM as the paper computes them |
| ``protocol`` | the evaluation protocol over test sets (Left / (Left+Right)/2 tables) |
| ``correspondence`` | does biPAM find the matches? (attention vs ground-truth disparity) |
| ``disparity_benefit`` | does SR help a stereo matcher? (the Table-5 idea) |
| ``study`` | the skeleton of the three: score each scene, mean per dataset, text and Markdown tables |
"""
