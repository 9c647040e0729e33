"""Run directories: who may write one (``ownership``), what it holds (``status``), how much disk it uses
(``disk``), and one ``vae-train`` job from a composed config to a finished directory (``job``)."""
