"""The networks: a registry of specs, and iPASSR (with biPAM), NAFSSR and PASSRnet registered in it.

| module | what it holds |
| --- | --- |
| ``registry`` | ``NetworkSpec`` and the registry (built-in networks, plugins' entry points), torch-free |
| ``specs`` | the built-in networks' specs: iPASSR, NAFSSR, PASSRnet, torch-free |
| ``names`` | which network a weights file holds, without torch; the networks' fixed names |
| ``ipassr`` | the iPASSR network, its ``ModelConfig``, reference-name translation, export forward |
| ``bipam`` | biPAM (eq. 4-8): attention, relaxation, valid masks, and its export-friendly forward |
| ``losses`` | iPASSR's five losses (eq. 9-15) and the optional disparity-hint loss |
| ``nafssr`` | NAFSSR (T/S/B/L) and its official checkpoint names |
| ``passrnet``, ``morphology`` | PASSRnet and its valid-mask cleaning |
| ``checkpoint`` | reading, strictly loading and saving the weights of any registered network |
"""
