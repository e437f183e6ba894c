"""``ipassr serve``: a web page to try stereo super-resolution on one's own photos (ipassr[web]).

| module | what it holds |
| --- | --- |
| ``uploads`` | upload limits (bytes, pixels from headers), reading one stereo photo from the inputs |
| ``work`` | the ``Studio``: networks, one super-resolution with all the page shows, downloads |
| ``explorer`` | the correspondence explorer: one pixel's attention row over the other view |
| ``app`` | the Gradio page (imports gradio) |
| ``server`` | its temporary folder, offline settings, queue and launch |

Only ``app`` and ``server.serve`` need Gradio; the rest is tested without it.
"""
