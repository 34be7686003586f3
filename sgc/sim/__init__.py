"""The simulator of SDSS-format fields and their truth catalogues (:func:`sgc.sim.simulate.simulate`).

- :mod:`sgc.sim.geometry`: drift-scan geometry, band offsets, overlapping consecutive fields.
- :mod:`sgc.sim.sources`: stars and galaxies with realistic counts, sizes, shapes and colours.
- :mod:`sgc.sim.render`: seeing, sky and noise, the rendering of each band, and what camera and photo add:
  saturation and bleed trails, residual cosmic rays, a residual sky gradient.
- :mod:`sgc.sim.simulate`: frames and calibObj files written in the SAS layout.
"""
