"""Reading inputs, safely, with errors that name the file: images (:mod:`.images`), clips (:mod:`.clips`),
volumes (:mod:`.volumes`). Writing pictures and files is :mod:`gradcam.render`."""
