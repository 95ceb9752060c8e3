__all__ = ['ttypes', 'constants', 'ThriftEventTransmissionService']
