"""From photos to names: any trained or exported enas_face model applied to photos.

    from enas_face.recognition import Embedder, Gallery
    embedder = Embedder.load("runs/demo/fixed/top1/saved_model")   # run folder, SavedModel,
                                                                   # .tflite or .onnx
    faces = embedder.embed("photo.jpg")          # every face: box, landmarks, unit embedding
    result = embedder.verify("a.jpg", "b.jpg")   # cosine and decision at the calibrated threshold
    gallery = Gallery(embedder, "people/enas_face_gallery.jsonl")
    gallery.enrol("people")                      # one subfolder per person; resumable
    matches = gallery.identify("group.jpg", top_k=3)

embedder.py: loading the model and its thresholds, detection and alignment through the
training code path (data.images, data.align), embeddings; gallery.py: the enrolled people
in a resumable JSONL file bound to one model.
"""
from enas_face.recognition.embedder import Embedder, FaceEmbedding, NoFaceInPhoto, Verification
from enas_face.recognition.gallery import Gallery, GalleryError, Identification

__all__ = ["Embedder", "FaceEmbedding", "NoFaceInPhoto", "Verification", "Gallery",
           "GalleryError", "Identification"]
