__all__ = ['ttypes', 'constants', 'ThriftSecureEventTransmissionService']
