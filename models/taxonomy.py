"""ELAsTiCC2 class taxonomy (the ids brokers publish) and the mapping from training labels."""

from __future__ import annotations

RR_LYRAE = 2323
SN_IA = 2222
SN_IBC = 2223
SN_II = 2224
SLSN = 2242
AGN = 2332
EB = 2325
RESIDUAL = 200  # "none of the classes this classifier knows"
NOT_CLASSIFIED = 300  # the classifier declined (too few points, no usable band)
NON_SN_OTHER = RESIDUAL

LABELS = {RR_LYRAE: "RR Lyrae", SN_IA: "SN Ia", SN_IBC: "SN Ib/c", SN_II: "SN II", SLSN: "SLSN",
          AGN: "AGN", EB: "EB", RESIDUAL: "Residual", NOT_CLASSIFIED: "NotClassified"}

SUPERNOVA_CLASSES = (SN_IA, SN_IBC, SN_II, SLSN)
SN_CLASSES = (*SUPERNOVA_CLASSES, RESIDUAL)  # the supernova model's classes, in its output order

# PLAsTiCC target -> ELAsTiCC2 id. Thermonuclear subtypes (91bg, Iax) count as SN Ia here: the
# supernova classifier publishes Ia / Ib/c / II / SLSN only, with the rest on Residual.
PLASTICC_TO_ELASTICC = {
    90: SN_IA, 67: SN_IA, 52: SN_IA, 62: SN_IBC, 42: SN_II, 95: SLSN,
    92: RR_LYRAE, 88: AGN, 16: EB,
}
