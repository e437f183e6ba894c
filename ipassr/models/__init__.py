"""The networks: iPASSR (with biPAM), NAFSSR and PASSRnet, their losses and their weights files.

| module | what it holds |
| --- | --- |
| ``ipassr`` | the iPASSR network (trunk, fusion, upsampler) and its ``ModelConfig`` |
| ``bipam`` | biPAM (eq. 4-8): attention, relaxation, valid masks |
| ``losses`` | iPASSR's five losses (eq. 9-15) and the optional disparity-hint loss |
| ``nafssr`` | NAFSSR (T/S/B/L) and its official checkpoint names |
| ``passrnet``, ``morphology`` | PASSRnet and its valid-mask cleaning |
| ``zoo`` | NAFSSR and PASSRnet from their weights |
| ``names`` | which network a weights file holds, without torch |
| ``checkpoint`` | loading and saving weights of any network |
"""
