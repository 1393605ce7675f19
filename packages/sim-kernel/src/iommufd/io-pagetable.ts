/**
 * struct io_pagetable (drivers/iommu/iommufd/io_pagetable.c): the IOVA space of an IOAS.
 * Areas map IOVA ranges to pinned user pages; reserved ranges (from devices and the
 * selftest) and allowed ranges (IOMMU_IOAS_ALLOW_IOVAS) restrict where mappings may go.
 */
export class IoPagetable {
  /** iopt->iova_alignment: the largest minimum page size of the attached domains (1 when none). */
  iovaAlignment = 1;
  /** iopt->disable_large_pages (IOMMU_OPTION_HUGE_PAGES = 0). */
  disableLargePages = false;
}
